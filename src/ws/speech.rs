//! Raw-PCM speech held in memory until it is stored: one utterance per socket, bounded
//! per utterance (5 MiB, a voice sample's cap), per account and per process
//! (`JJONGAL_SPEECH_BUFFER_PER_ACCOUNT`, `JJONGAL_SPEECH_BUFFER_TOTAL`). At a cap the
//! utterance is cut where it is: what was accepted is stored and answered, the rest of
//! it (up to the next text frame) is refused, and the client is told.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::MAX_SAMPLE_BYTES;
use super::protocol::AudioConfig;
use crate::vocabulary::UserId;

/// The process's account of buffered speech.
pub(crate) struct SpeechBudget {
    per_account: usize,
    total: usize,
    used: AtomicUsize,
    accounts: Mutex<HashMap<UserId, usize>>,
}

impl SpeechBudget {
    pub(crate) fn new(per_account: usize, total: usize) -> Arc<SpeechBudget> {
        Arc::new(SpeechBudget {
            per_account,
            total,
            used: AtomicUsize::new(0),
            accounts: Mutex::new(HashMap::new()),
        })
    }

    /// Bytes buffered now, in all.
    #[cfg(test)]
    fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `n` more bytes for `user`; `Err` names the cap that refused.
    fn take(&self, user: UserId, n: usize) -> Result<(), Cap> {
        let mut accounts = self.accounts.lock().expect("speech budget lock");
        let mine = accounts.get(&user).copied().unwrap_or(0);
        if mine + n > self.per_account {
            return Err(Cap::Account);
        }
        if self.used.load(Ordering::Relaxed) + n > self.total {
            return Err(Cap::Process);
        }
        self.used.fetch_add(n, Ordering::Relaxed);
        accounts.insert(user, mine + n);
        Ok(())
    }

    fn give_back(&self, user: UserId, n: usize) {
        if n == 0 {
            return;
        }
        let mut accounts = self.accounts.lock().expect("speech budget lock");
        self.used.fetch_sub(n, Ordering::Relaxed);
        if let Some(mine) = accounts.get_mut(&user) {
            *mine = mine.saturating_sub(n);
            if *mine == 0 {
                accounts.remove(&user);
            }
        }
    }
}

/// Which cap cut an utterance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cap {
    /// One utterance's 5 MiB.
    Utterance,
    /// The account's speech buffered across its sockets.
    Account,
    /// The process's speech buffered across every socket.
    Process,
}

/// A finished utterance: its PCM, held against the budget until dropped.
pub(crate) struct Utterance {
    pub config: AudioConfig,
    pub pcm: Vec<u8>,
    budget: Arc<SpeechBudget>,
    user: UserId,
}

impl Drop for Utterance {
    fn drop(&mut self) {
        self.budget.give_back(self.user, self.pcm.len());
    }
}

/// The utterance being spoken on one socket.
pub(crate) struct Speech {
    budget: Arc<SpeechBudget>,
    user: UserId,
    /// Set by `start_conversation` with `audio_config`: binary frames are speech.
    pub config: Option<AudioConfig>,
    pcm: Vec<u8>,
    /// The utterance was cut at a cap: its later frames are dropped (the client was
    /// told once).
    cut: bool,
}

/// What one binary frame of speech did.
pub(crate) enum Pushed {
    Kept,
    /// Dropped: the utterance was already cut.
    Dropped,
    /// The frame would pass `Cap`: the utterance ends before it (what came before is
    /// kept) and the rest of it is refused.
    Cut(Cap, Option<Utterance>),
}

impl Speech {
    pub(crate) fn new(budget: Arc<SpeechBudget>, user: UserId) -> Speech {
        Speech {
            budget,
            user,
            config: None,
            pcm: Vec::new(),
            cut: false,
        }
    }

    /// Whether an utterance is under way (its later frames are not separate messages).
    pub(crate) fn under_way(&self) -> bool {
        self.config.is_some() && (!self.pcm.is_empty() || self.cut)
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) -> Pushed {
        if self.cut {
            return Pushed::Dropped;
        }
        let cap = if 44 + self.pcm.len() + bytes.len() > MAX_SAMPLE_BYTES {
            Some(Cap::Utterance)
        } else {
            self.budget.take(self.user, bytes.len()).err()
        };
        match cap {
            None => {
                self.pcm.extend_from_slice(bytes);
                Pushed::Kept
            }
            Some(cap) => {
                self.cut = true;
                Pushed::Cut(cap, self.finish_pcm())
            }
        }
    }

    /// The utterance so far (if any); the next one starts empty.
    pub(crate) fn take(&mut self) -> Option<Utterance> {
        self.cut = false;
        self.finish_pcm()
    }

    fn finish_pcm(&mut self) -> Option<Utterance> {
        let pcm = std::mem::take(&mut self.pcm);
        match self.config {
            Some(config) if !pcm.is_empty() => Some(Utterance {
                config,
                pcm,
                budget: self.budget.clone(),
                user: self.user,
            }),
            _ => {
                self.budget.give_back(self.user, pcm.len());
                None
            }
        }
    }
}

impl Drop for Speech {
    fn drop(&mut self) {
        self.budget.give_back(self.user, self.pcm.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_cut_utterances_and_every_byte_is_given_back() {
        let budget = SpeechBudget::new(100, 150);
        let (a, b) = (UserId::random(), UserId::random());
        let config = Some(AudioConfig { sample_rate: 16000 });
        let mut one = Speech::new(budget.clone(), a);
        let mut two = Speech::new(budget.clone(), a);
        let mut three = Speech::new(budget.clone(), b);
        one.config = config;
        two.config = config;
        three.config = config;
        assert!(matches!(one.push(&[0; 60]), Pushed::Kept));
        // The account's cap: 60 + 60 > 100. What came before on that socket is kept.
        assert!(matches!(two.push(&[0; 20]), Pushed::Kept));
        let held = match two.push(&[0; 40]) {
            Pushed::Cut(Cap::Account, Some(u)) => u,
            _ => panic!("the account's cap cuts the utterance"),
        };
        assert_eq!(held.pcm.len(), 20);
        assert!(matches!(two.push(&[0; 2]), Pushed::Dropped));
        // The process's cap: 60 + 20 held (until stored) + 80 > 150.
        match three.push(&[0; 80]) {
            Pushed::Cut(Cap::Process, None) => {}
            _ => panic!("the process's cap cuts the utterance"),
        }
        let finished = one.take().expect("an utterance");
        assert_eq!(finished.pcm.len(), 60);
        assert_eq!(budget.used(), 80);
        drop((finished, held));
        drop((one, two, three));
        assert_eq!(budget.used(), 0);
        assert!(budget.accounts.lock().unwrap().is_empty());
    }
}

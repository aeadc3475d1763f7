//! Audio as the providers and the clients hand it to us: the format read from the bytes
//! (never from a header or a file name), and long narration text cut into the pieces a
//! speech API takes at once.

/// An audio container or stream format we store and serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AudioFormat {
    pub extension: &'static str,
    pub content_type: &'static str,
}

const fn format(extension: &'static str, content_type: &'static str) -> AudioFormat {
    AudioFormat {
        extension,
        content_type,
    }
}

/// The audio format of `bytes`: WAV, Ogg, FLAC, WebM, M4A/MP4, AAC (ADTS) or MP3.
pub(crate) fn sniff(bytes: &[u8]) -> Option<AudioFormat> {
    let at = |i: usize, s: &[u8]| bytes.len() >= i + s.len() && &bytes[i..i + s.len()] == s;
    if at(0, b"RIFF") && at(8, b"WAVE") {
        Some(format("wav", "audio/wav"))
    } else if at(0, b"OggS") {
        Some(format("ogg", "audio/ogg"))
    } else if at(0, b"fLaC") {
        Some(format("flac", "audio/flac"))
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(format("webm", "audio/webm"))
    } else if at(4, b"ftyp")
        && (at(8, b"M4A ") || at(8, b"mp42") || at(8, b"isom") || at(8, b"M4B "))
    {
        Some(format("m4a", "audio/mp4"))
    } else if at(0, b"ID3") {
        Some(format("mp3", "audio/mpeg"))
    } else if bytes.len() > 3 && bytes[0] == 0xFF && bytes[1] & 0xF0 == 0xF0 && bytes[1] & 0x06 == 0
    {
        // 12 sync bits and layer `00`: an ADTS (AAC) frame header.
        Some(format("aac", "audio/aac"))
    } else if bytes.len() > 3 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0 && bytes[1] & 0x06 != 0
    {
        // 11 sync bits and a layer other than `00`: an MPEG audio frame.
        Some(format("mp3", "audio/mpeg"))
    } else {
        None
    }
}

/// Cuts `text` into pieces of at most `limit` characters, at sentence ends where it can
/// (then at spaces, then anywhere), so every word is narrated and none is cut in two
/// unless a single run of text is longer than `limit`.
pub(crate) fn split_for_speech(text: &str, limit: usize) -> Vec<String> {
    let limit = limit.max(1);
    let mut pieces = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > limit {
        // The byte offset just past the `limit`-th character.
        let window_end = rest
            .char_indices()
            .nth(limit)
            .map_or(rest.len(), |(i, _)| i);
        let window = &rest[..window_end];
        let sentence_end = window
            .char_indices()
            .rev()
            .find(|(_, c)| matches!(c, '.' | '!' | '?' | '…' | '。' | '\n'))
            .map(|(i, c)| i + c.len_utf8());
        let cut = sentence_end
            .or_else(|| window.rfind(char::is_whitespace))
            .filter(|&i| i > 0)
            .unwrap_or(window_end);
        pieces.push(rest[..cut].trim().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        pieces.push(rest.to_string());
    }
    pieces.retain(|p| !p.is_empty());
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_bytes() {
        let ext = |b: &[u8]| sniff(b).map(|f| f.extension);
        assert_eq!(ext(b"RIFF\0\0\0\0WAVEfmt "), Some("wav"));
        assert_eq!(ext(b"OggS\0\x02"), Some("ogg"));
        assert_eq!(ext(b"fLaC\0\0\0\x22"), Some("flac"));
        assert_eq!(ext(&[0x1A, 0x45, 0xDF, 0xA3, 1]), Some("webm"));
        assert_eq!(ext(b"\0\0\0\x20ftypM4A \0"), Some("m4a"));
        assert_eq!(ext(b"ID3\x04\0\0"), Some("mp3"));
        assert_eq!(ext(&[0xFF, 0xFB, 0x90, 0x00]), Some("mp3"));
        assert_eq!(ext(&[0xFF, 0xF3, 0x90, 0x00]), Some("mp3"));
        // ADTS: FFF1 (MPEG-4) and FFF9 (MPEG-2), layer 00.
        assert_eq!(ext(&[0xFF, 0xF1, 0x50, 0x80, 0x02]), Some("aac"));
        assert_eq!(ext(&[0xFF, 0xF9, 0x50, 0x80, 0x02]), Some("aac"));
        assert_eq!(sniff(b"fLaC").unwrap().content_type, "audio/flac");
        assert_eq!(
            sniff(&[0xFF, 0xF1, 0x50, 0x80]).unwrap().content_type,
            "audio/aac"
        );
        assert!(sniff(b"\x89PNG\r\n\x1a\n").is_none());
        assert!(sniff(b"hello").is_none());
        assert!(sniff(b"").is_none());
    }

    #[test]
    fn long_text_is_cut_at_sentence_ends_and_nothing_is_lost() {
        let sentence = "토끼가 숲속을 깡충깡충 뛰어갔어요. ";
        let text = sentence.repeat(300);
        let pieces = split_for_speech(&text, 4096);
        assert!(pieces.len() > 1);
        for p in &pieces {
            assert!(p.chars().count() <= 4096);
            assert!(
                p.ends_with('.'),
                "cut mid-sentence: …{}",
                &p[p.len() - 20..]
            );
        }
        let joined: String = pieces.join(" ");
        assert_eq!(
            joined.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>()
        );
        assert_eq!(split_for_speech("짧은 글.", 4096), vec!["짧은 글."]);
        // No sentence end, no space: cut anyway, nothing dropped.
        let run = "가".repeat(10);
        assert_eq!(
            split_for_speech(&run, 4),
            vec!["가가가가", "가가가가", "가가"]
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes: a known format or none, never a panic (short inputs included).
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = sniff(&bytes);
        }

        /// Each container's magic decides, whatever follows it.
        #[test]
        fn magic_numbers_decide(size in any::<[u8; 4]>(), rest in prop::collection::vec(any::<u8>(), 0..64)) {
            let with = |head: &[u8]| [head, &rest].concat();
            let ext = |b: &[u8]| sniff(b).map(|f| f.extension);
            let wav = [b"RIFF".as_slice(), &size, b"WAVE"].concat();
            prop_assert_eq!(ext(&with(&wav)), Some("wav"));
            prop_assert_eq!(ext(&with(b"OggS")), Some("ogg"));
            prop_assert_eq!(ext(&with(b"fLaC")), Some("flac"));
            prop_assert_eq!(ext(&with(&[0x1A, 0x45, 0xDF, 0xA3])), Some("webm"));
            let m4a = [size.as_slice(), b"ftypM4A "].concat();
            prop_assert_eq!(ext(&with(&m4a)), Some("m4a"));
            prop_assert_eq!(ext(&with(b"ID3")), Some("mp3"));
        }

        /// JSON or SVG text is never taken for audio (unless it spells an MP4 box
        /// header, which is how MP4 is recognised).
        #[test]
        fn text_is_not_audio(text in "[{<][ -~]{0,63}") {
            prop_assume!(!text.contains("ftyp"));
            prop_assert_eq!(sniff(text.as_bytes()), None);
        }

        /// Splitting keeps every non-space character, in order, within the limit.
        #[test]
        fn splitting_loses_nothing(text in "[가-힣a-z .!?\n]{0,300}", limit in 1usize..50) {
            let pieces = split_for_speech(&text, limit);
            for p in &pieces {
                prop_assert!(p.chars().count() <= limit);
            }
            let kept: String = pieces.concat().chars().filter(|c| !c.is_whitespace()).collect();
            let all: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            prop_assert_eq!(kept, all);
        }
    }
}

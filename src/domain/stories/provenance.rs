//! Where a story came from (issue 33; Korea's AI Basic Act asks that AI-generated content
//! be labelled): which provider and model wrote its text, drew its pictures and read its
//! narration — read from the generation history, so it is what happened, not what is
//! configured now. The pictures and sounds carry the same label in their own metadata
//! ([`crate::media::label`]).

use std::collections::BTreeMap;

use super::Story;
use crate::domain::Stories;
use crate::error::AppResult;
use crate::media::label::TRAINED_ALGORITHMIC_MEDIA;

/// What apps show beside an AI-made story (docs/privacy.md), and what its book says.
pub(crate) const AI_LABEL: &str = "AI가 만든 이야기예요. 글과 그림, 목소리를 AI가 만들었어요.";
use crate::store;
use crate::vocabulary::StepOutcome;

/// A story's provenance.
#[derive(Clone, Debug)]
pub struct Provenance {
    /// Every story's text, pictures and narration are made by AI (offline ones too:
    /// they are programs, not people).
    pub ai_generated: bool,
    /// The IPTC digital source type of all of it.
    pub digital_source_type: &'static str,
    pub parts: Vec<ProvenancePart>,
}

/// What one provider (and model) made of a story.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvenancePart {
    /// `text`, `illustration` or `narration`.
    pub capability: &'static str,
    /// The provider's name with its model (`openai-images (gpt-image-1)`), or an offline
    /// built-in's name (`offline-png`).
    pub made_by: String,
    /// Made on this server by a built-in offline provider.
    pub offline: bool,
    /// The chapters it made (for `text`: every chapter).
    pub chapters: Vec<i32>,
}

/// The generation steps whose success made something, and what they made.
const MAKING_STEPS: [(&str, &str); 3] = [
    ("write_text", "text"),
    ("illustrate", "illustration"),
    ("narrate", "narration"),
];

impl Stories<'_> {
    /// The provenance of `story` (already read by a viewer allowed to).
    pub(crate) async fn provenance(&self, story: &Story) -> AppResult<Provenance> {
        let steps = store::jobs::steps_of(&mut self.pool().get().await?.db(), story.id).await?;
        // The last success of each (capability, chapter) made what the story holds.
        let mut made: BTreeMap<(&'static str, Option<i32>), String> = BTreeMap::new();
        for step in steps {
            if step.outcome != StepOutcome::Succeeded {
                continue;
            }
            let Some((_, capability)) = MAKING_STEPS.iter().find(|(s, _)| *s == step.step) else {
                continue;
            };
            let by = step.made_by.unwrap_or(step.provider);
            made.insert((capability, step.chapter_number), by);
        }
        let mut parts: Vec<ProvenancePart> = Vec::new();
        let mut add = |capability: &'static str, by: &str, chapter: i32| match parts
            .iter_mut()
            .find(|p| p.capability == capability && p.made_by == by)
        {
            Some(part) => part.chapters.push(chapter),
            None => parts.push(ProvenancePart {
                capability,
                made_by: by.to_string(),
                offline: by.starts_with("offline-"),
                chapters: vec![chapter],
            }),
        };
        for chapter in &story.chapters {
            if let Some(by) = made.get(&("text", None)) {
                add("text", by, chapter.number);
            }
            // Only what the chapter holds (a stored file), not a picture lost on the way.
            if chapter.image.is_some()
                && let Some(by) = made.get(&("illustration", Some(chapter.number)))
            {
                add("illustration", by, chapter.number);
            }
            if chapter.audio.is_some()
                && let Some(by) = made.get(&("narration", Some(chapter.number)))
            {
                add("narration", by, chapter.number);
            }
        }
        Ok(Provenance {
            ai_generated: !story.chapters.is_empty(),
            digital_source_type: TRAINED_ALGORITHMIC_MEDIA,
            parts,
        })
    }
}

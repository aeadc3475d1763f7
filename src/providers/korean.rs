//! Korean particles (조사) that depend on whether the previous word ends in a final
//! consonant (받침): 이/가, 은/는, 을/를, 와/과, 으로/로, 아/야.

/// The final consonant index of a Hangul syllable (0 = none, 8 = ㄹ), or a guess for
/// digits and Latin letters as they are read aloud in Korean.
fn final_consonant(word: &str) -> Option<u32> {
    let last = word.trim_end().chars().last()?;
    let code = last as u32;
    if (0xAC00..=0xD7A3).contains(&code) {
        return Some((code - 0xAC00) % 28);
    }
    Some(match last {
        // 영, 일, 삼, 육, 칠, 팔 end in a consonant; 일/칠/팔 in ㄹ.
        '0' | '3' | '6' => 21,
        '1' | '7' | '8' => 8,
        'l' | 'L' => 8,
        'm' | 'n' | 'M' | 'N' => 4,
        _ => 0,
    })
}

fn has_final(word: &str) -> bool {
    final_consonant(word).is_some_and(|c| c != 0)
}

/// Which particle follows `word`: `pick(word, "이", "가")`.
pub(crate) fn particle<'a>(word: &str, with_final: &'a str, without_final: &'a str) -> &'a str {
    if has_final(word) {
        with_final
    } else {
        without_final
    }
}

/// `word` + 이/가.
pub(crate) fn i_ga(word: &str) -> String {
    format!("{word}{}", particle(word, "이", "가"))
}
/// `word` + 은/는.
pub(crate) fn eun_neun(word: &str) -> String {
    format!("{word}{}", particle(word, "은", "는"))
}
/// `word` + 을/를.
pub(crate) fn eul_reul(word: &str) -> String {
    format!("{word}{}", particle(word, "을", "를"))
}
/// `word` + 와/과.
pub(crate) fn wa_gwa(word: &str) -> String {
    format!("{word}{}", particle(word, "과", "와"))
}
/// `word` + 으로/로 (로 after a vowel or ㄹ).
pub(crate) fn euro_ro(word: &str) -> String {
    let suffix = match final_consonant(word) {
        Some(0) | Some(8) | None => "로",
        Some(_) => "으로",
    };
    format!("{word}{suffix}")
}
/// Calling someone by name: 민준아, 서연아 / 하늘아, 지우야.
pub(crate) fn a_ya(name: &str) -> String {
    format!("{name}{}", particle(name, "아", "야"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn particles_follow_the_final_consonant() {
        assert_eq!(i_ga("민준"), "민준이");
        assert_eq!(i_ga("토끼"), "토끼가");
        assert_eq!(eun_neun("거북이"), "거북이는");
        assert_eq!(eun_neun("곰"), "곰은");
        assert_eq!(eul_reul("숲"), "숲을");
        assert_eq!(eul_reul("바다"), "바다를");
        assert_eq!(wa_gwa("민준"), "민준과");
        assert_eq!(wa_gwa("서아"), "서아와");
        assert_eq!(euro_ro("숲"), "숲으로");
        assert_eq!(euro_ro("바다"), "바다로");
        assert_eq!(euro_ro("하늘"), "하늘로");
        assert_eq!(a_ya("민준"), "민준아");
        assert_eq!(a_ya("지우"), "지우야");
    }
}

//! Text clean-up for recognizer output and scoring: Simplified Chinese, normalisation,
//! known hallucinations and decoder loops.

use zhconv::{zhconv, Variant};

/// Converts Traditional characters to Simplified, one character at a time.
///
/// Character by character on purpose: zhconv's phrase tables also rewrite text that is
/// already Simplified (「怎么九」 became 「怎幺九」), and Traditional→Simplified is nearly
/// always one-to-one per character, so phrases add risk without adding accuracy here.
pub fn to_simplified(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut buf = [0u8; 4];
    for c in s.chars() {
        if is_cjk(c) {
            out.push_str(&zhconv(c.encode_utf8(&mut buf), Variant::ZhHans));
        } else {
            out.push(c);
        }
    }
    out
}

/// True when `s` has a character that has a different Simplified form.
pub fn has_traditional(s: &str) -> bool {
    to_simplified(s) != s
}

pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F)
}

/// Full-width ASCII forms (１２３, ＡＢＣ) to their ASCII letters.
pub fn fold_width(c: char) -> char {
    match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        0x3000 => ' ',
        _ => c,
    }
}

/// Characters scored for CER: Simplified, lower-cased, punctuation and spaces removed.
pub fn normalize_zh(s: &str) -> Vec<char> {
    to_simplified(s)
        .chars()
        .map(fold_width)
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric())
        .collect()
}

/// Words scored for WER: lower-cased; apostrophes dropped ("don't" = "dont"); any other
/// punctuation separates words.
pub fn normalize_en(s: &str) -> Vec<String> {
    let cleaned: String = s
        .chars()
        .filter(|c| !matches!(c, '\'' | '\u{2019}'))
        .map(fold_width)
        .flat_map(char::to_lowercase)
        .map(|c| if c.is_alphanumeric() { c } else { ' ' })
        .collect();
    cleaned.split_whitespace().map(str::to_string).collect()
}

/// Phrases whisper produces from silence or noise, learned from subtitle training data.
const HALLUCINATIONS: &[&str] = &[
    "字幕由",
    "字幕提供",
    "字幕志愿者",
    "中文字幕",
    "本字幕",
    "请不吝点赞",
    "点赞订阅",
    "订阅转发",
    "打赏支持",
    "明镜与点点栏目",
    "优优独播剧场",
    "谢谢观看",
    "感谢观看",
    "谢谢大家观看",
    "amara.org",
    "thank you for watching",
    "thanks for watching",
    "subtitles by",
    "please subscribe",
];

/// True when the text is one of whisper's known silence hallucinations.
pub fn is_hallucination(text: &str) -> bool {
    let t = to_simplified(text).to_lowercase();
    HALLUCINATIONS.iter().any(|h| t.contains(h))
}

/// True when the text is a decoder loop: a unit of 1–12 characters repeated at least
/// `min_repeats` times in a row and covering most of the text.
pub fn looks_looped(text: &str) -> bool {
    let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
    let n = chars.len();
    if n < 8 {
        return false;
    }
    for unit in 1..=12.min(n / 4) {
        let min_repeats = if unit == 1 { 6 } else { 4 };
        let mut i = 0;
        while i + unit * min_repeats <= n {
            let mut reps = 1;
            while i + (reps + 1) * unit <= n
                && chars[i + reps * unit..i + (reps + 1) * unit] == chars[i..i + unit]
            {
                reps += 1;
            }
            if reps >= min_repeats && reps * unit * 2 >= n {
                return true;
            }
            i += 1;
        }
    }
    false
}

/// Cuts decoder-loop runs down to two copies: a single character repeated six or more
/// times, or a longer unit repeated three or more times (at least six characters in all).
/// Shorter runs ("对对对", "八八八") are real speech and stay.
pub fn collapse_repeats(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    'outer: while i < chars.len() {
        for unit in 1..=12 {
            let min_reps = if unit == 1 { 6 } else { 3 };
            if i + unit * min_reps > chars.len() {
                break;
            }
            let mut reps = 1;
            while i + (reps + 1) * unit <= chars.len()
                && chars[i + reps * unit..i + (reps + 1) * unit] == chars[i..i + unit]
            {
                reps += 1;
            }
            if reps >= min_reps && unit * reps >= 6 {
                out.extend_from_slice(&chars[i..i + unit * 2]);
                i += unit * reps;
                continue 'outer;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out.into_iter().collect()
}

/// Levenshtein distance between two sequences.
pub fn edit_distance<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, x) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(x != y);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traditional_is_folded() {
        assert_eq!(to_simplified("請問還有其他問題嗎"), "请问还有其他问题吗");
        assert!(has_traditional("電話"));
        assert!(!has_traditional("电话热线12345"));
        // Already-Simplified text is left alone, whatever the neighbours.
        let s = "纠怎么九标九标六";
        assert_eq!(to_simplified(s), s);
    }

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize_zh("您好，12345 熱線！")
                .into_iter()
                .collect::<String>(),
            "您好12345热线"
        );
        assert_eq!(
            normalize_zh("１２３４５").into_iter().collect::<String>(),
            "12345"
        );
        assert_eq!(
            normalize_en("And so, my fellow Americans: ask not!"),
            vec!["and", "so", "my", "fellow", "americans", "ask", "not"]
        );
        assert_eq!(normalize_en("Don't STOP"), vec!["dont", "stop"]);
    }

    #[test]
    fn edit_distance_counts_edits() {
        let a: Vec<char> = "kitten".chars().collect();
        let b: Vec<char> = "sitting".chars().collect();
        assert_eq!(edit_distance(&a, &b), 3);
        assert_eq!(edit_distance::<char>(&[], &b), 7);
        assert_eq!(edit_distance(&a, &a), 0);
    }

    #[test]
    fn hallucinations_and_loops() {
        assert!(is_hallucination("字幕由Amara.org社区提供"));
        assert!(is_hallucination(
            "請不吝點贊 訂閱 轉發 打賞支持明鏡與點點欄目"
        ));
        assert!(!is_hallucination("我想咨询一下社保缴费的问题"));
        assert!(looks_looped("我要我要我要我要我要我要我要我要"));
        assert!(looks_looped("啊啊啊啊啊啊啊啊啊啊"));
        assert!(!looks_looped("我想问一下公积金怎么提取"));
        assert!(!looks_looped("谢谢谢谢"));
        assert_eq!(
            collapse_repeats("好的好的好的好的好的，再见"),
            "好的好的，再见"
        );
    }
}

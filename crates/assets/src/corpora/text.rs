//! Cutting long texts into documents that fit one packed row: groups of
//! whole sentences or whole paragraphs under a byte cap.

/// Target size of a `fiction` / `speeches` document, chosen to stay under
/// 1024 tokens so packing's per-document truncation loses nothing.
pub(super) const GROUP_BYTES: usize = 3600;

pub(super) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Split text into groups of whole sentences (ending in ". ") of at most
/// `max_bytes` each (a longer sentence stays whole).
pub(super) fn sentence_groups(text: &str, max_bytes: usize) -> Vec<String> {
    let mut groups = Vec::new();
    let mut cur = String::new();
    for sentence in text.split_inclusive(". ") {
        if !cur.is_empty() && cur.len() + sentence.len() > max_bytes {
            groups.push(std::mem::take(&mut cur).trim().to_string());
        }
        cur.push_str(sentence);
    }
    if !cur.trim().is_empty() {
        groups.push(cur.trim().to_string());
    }
    groups
}

/// Split text into groups of whole paragraphs (blank-line separated) of at
/// most `max_bytes` each (a longer paragraph stays whole).
pub(super) fn paragraph_groups(text: &str, max_bytes: usize) -> Vec<String> {
    let text = text.replace("\r\n", "\n");
    let mut groups = Vec::new();
    let mut cur = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        if !cur.is_empty() && cur.len() + 2 + para.len() > max_bytes {
            groups.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push_str("\n\n");
        }
        cur.push_str(para);
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_groups_keep_whole_sentences_under_the_cap() {
        let text = "One two. Three four five. Six. Seven eight nine ten. ";
        let g = sentence_groups(text, 22);
        assert_eq!(
            g,
            vec!["One two.", "Three four five. Six.", "Seven eight nine ten."]
        );
        assert_eq!(g.join(" "), text.trim());
        assert_eq!(
            sentence_groups("no full stop at all", 5),
            vec!["no full stop at all"]
        );
    }

    #[test]
    fn paragraph_grouping() {
        let g = paragraph_groups("a\n\nbb\n\n\n\ncc\r\n\r\nd", 6);
        assert_eq!(g, vec!["a\n\nbb", "cc\n\nd"]);
        assert_eq!(paragraph_groups("  \n\n ", 10), Vec::<String>::new());
    }
}

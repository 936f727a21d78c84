//! Secret redaction: known token formats and high-entropy strings are masked before a prompt or any other
//! free text is stored. Each text is scanned once, when it arrives; stored text is never scanned again.

use std::sync::LazyLock;

use regex::Regex;

/// What a masked secret is replaced with.
pub const MASK: &str = "[REDACTED]";

/// Known token formats: cloud keys, forge and chat tokens, model API keys, JWTs, private key blocks, and
/// `password=`-style assignments (the value is masked, the name kept).
static KNOWN: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        // Distinctive prefixes match inside a word too (`xAKIA…y`, a key pasted against other text); `sk-`
        // keeps its word boundary, since it also ends words such as `task-`.
        r"(?:AKIA|ASIA)[0-9A-Z]{16}",
        r"gh[pousr]_[A-Za-z0-9]{30,}",
        r"github_pat_[A-Za-z0-9_]{40,}",
        r"glpat-[A-Za-z0-9_\-]{20,}",
        r"xox[abprs]-[A-Za-z0-9\-]{10,}",
        r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{20,}\b",
        r"AIza[0-9A-Za-z_\-]{35}",
        r"\beyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}\b",
        r"(?i)\bbearer\s+[A-Za-z0-9_\-.=+/]{16,}",
        r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:[^\s@/]+@",
    ]
    .iter()
    .map(|p| Regex::new(p).expect("valid pattern"))
    .collect()
});

static ASSIGNMENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b((?:password|passwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret)\s*[:=]\s*)("[^"]+"|'[^']+'|\S+)"#)
        .expect("valid pattern")
});

static CANDIDATE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[A-Za-z0-9+/_\-=]{24,}").expect("valid pattern"));

/// Returns `text` with secrets masked.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for pattern in KNOWN.iter() {
        out = pattern.replace_all(&out, MASK).into_owned();
    }
    out = ASSIGNMENT.replace_all(&out, format!("${{1}}{MASK}")).into_owned();
    CANDIDATE
        .replace_all(&out, |caps: &regex::Captures<'_>| {
            let word = &caps[0];
            if looks_random(word) { MASK.to_owned() } else { word.to_owned() }
        })
        .into_owned()
}

/// A long token with high character entropy and a mix of classes looks like a key, not a word or a path.
fn looks_random(word: &str) -> bool {
    let classes = [
        word.bytes().any(|b| b.is_ascii_lowercase()),
        word.bytes().any(|b| b.is_ascii_uppercase()),
        word.bytes().any(|b| b.is_ascii_digit()),
    ];
    if classes.iter().filter(|c| **c).count() < 2 {
        return false;
    }
    let mut counts = [0u32; 256];
    for b in word.bytes() {
        counts[usize::from(b)] += 1;
    }
    let len = word.len() as f64;
    let entropy: f64 = counts.iter().filter(|c| **c > 0).map(|&c| f64::from(c) / len).map(|p| -p * p.log2()).sum();
    entropy > 4.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_known_tokens_and_random_strings_but_not_prose() {
        let cases = [
            "use AKIAIOSFODNN7EXAMPLE for the bucket",
            "token ghp_abcdefghijklmnopqrstuvwxyz0123456789AB ok",
            "ANTHROPIC_API_KEY=sk-ant-api03-abcdefghijklmnopqrstuvwxyz012345",
            "password = hunter2hunter2",
            "Authorization: Bearer abcdefghijklmnop1234567890",
            "db at postgres://admin:s3cr3t@db.internal:5432/app",
            "key Zx9QpL2mK8vR4tY7wN1sB6cF3hJ0gD5e",
            "glued xAKIAIOSFODNN7EXAMPLEy here",
            "slack xoxb-1234567890-abcdefghij",
            "gitlab glpat-abcdefghijklmnopqrst",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
            "maps AIzaSyA1234567890abcdefghijklmnopqrstuv",
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
        ];
        for case in cases {
            let masked = redact(case);
            assert!(masked.contains(MASK), "{case:?} was not masked: {masked:?}");
        }
        assert_eq!(redact("password = hunter2hunter2"), "password = [REDACTED]");
        for prose in [
            "please refactor src/components/UserProfileSettings.tsx",
            "rename handle_request_with_timeout_and_retries everywhere",
            "the commit 3f2a9c1e0b7d4a5b6c7d8e9f0a1b2c3d4e5f6a7b broke it",
        ] {
            assert_eq!(redact(prose), prose, "prose was masked");
        }
    }
}

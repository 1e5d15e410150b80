//! Secrets stay out of what medley writes: the values of the variables a mission names in
//! `secrets`, and of profile `env` entries whose names look secret, are masked as `***` in the
//! journal, the logs and every event (the prompt archive stays verbatim: it is what was sent).

/// The mask that replaces a secret.
pub const MASK: &str = "***";

/// Values shorter than this are not masked: they would mangle ids, counts and hashes.
pub const MIN_LEN: usize = 6;

/// Whether an environment variable's name looks like it holds a secret.
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH"]
        .iter()
        .any(|word| upper.contains(word))
}

/// The values to mask for `plan`: those of the variables its mission names in `secrets` (in
/// `env`, medley's environment, or a profile's `env`), and of the profile `env` entries whose
/// names look secret; longest first, each at least [`MIN_LEN`] long.
pub fn values(plan: &crate::plan::Plan, env: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for name in &plan.secrets {
        values.extend(env(name));
    }
    for profile in plan.agents.values() {
        for (name, value) in &profile.env {
            if looks_secret(name) || plan.secrets.contains(name) {
                values.push(value.clone());
            }
        }
    }
    values.retain(|v| v.chars().count() >= MIN_LEN);
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values
}

/// `text` with every secret of `secrets` (longest first) replaced by [`MASK`].
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), MASK);
        }
    }
    text
}

/// `event` with the secrets masked in every string it holds (its `type` tag aside).
pub fn mask_event(event: crate::event::Event, secrets: &[String]) -> crate::event::Event {
    fn walk(value: &mut serde_json::Value, secrets: &[String]) {
        match value {
            serde_json::Value::String(text)
                if secrets.iter().any(|s| text.contains(s.as_str())) =>
            {
                *text = mask(text, secrets);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| walk(v, secrets)),
            serde_json::Value::Object(fields) => {
                for (key, v) in fields.iter_mut() {
                    if key != "type" {
                        walk(v, secrets);
                    }
                }
            }
            _ => {}
        }
    }
    if secrets.is_empty() {
        return event;
    }
    let Ok(mut value) = serde_json::to_value(&event) else {
        return event;
    };
    walk(&mut value, secrets);
    serde_json::from_value(value).unwrap_or(event)
}

/// Masks a byte stream chunk by chunk: a secret split between two chunks is still masked.
#[derive(Debug, Default)]
pub struct Masker {
    secrets: Vec<Vec<u8>>,
    carry: Vec<u8>,
}

impl Masker {
    /// `secrets` longest first (as [`values`] gives them).
    pub fn new(secrets: &[String]) -> Masker {
        Masker {
            secrets: secrets
                .iter()
                .filter(|s| !s.is_empty())
                .map(|s| s.as_bytes().to_vec())
                .collect(),
            carry: Vec::new(),
        }
    }

    /// What of `chunk` can be written now, masked; the start of a possible secret at its end
    /// waits for the next chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.run(chunk, false)
    }

    /// The rest, at the end of the stream.
    pub fn finish(&mut self) -> Vec<u8> {
        self.run(&[], true)
    }

    fn run(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(data.len());
        let mut i = 0;
        'bytes: while i < data.len() {
            for secret in &self.secrets {
                if data[i] != secret[0] {
                    continue;
                }
                let rest = &data[i..];
                if rest.len() >= secret.len() {
                    if rest.starts_with(secret) {
                        out.extend_from_slice(MASK.as_bytes());
                        i += secret.len();
                        continue 'bytes;
                    }
                } else if !last && secret.starts_with(rest) {
                    self.carry = rest.to_vec();
                    return out;
                }
            }
            out.push(data[i]);
            i += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_look_secret() {
        for name in [
            "OPENAI_API_KEY",
            "GH_TOKEN",
            "client_secret",
            "DB_PASSWORD",
            "AWS_CREDENTIALS",
            "AUTH",
        ] {
            assert!(looks_secret(name), "{name}");
        }
        for name in ["HOME", "PATH", "MODEL", "IS_SANDBOX"] {
            assert!(!looks_secret(name), "{name}");
        }
    }

    #[test]
    fn a_stream_is_masked_across_chunks_and_short_values_are_left() {
        let secrets = vec!["sk-secret-123".to_owned(), "hunter2!".to_owned()];
        let text = b"key sk-secret-123 and hunter2! and sk-secr at the end sk-secret-12";
        for size in 1..text.len() {
            let mut masker = Masker::new(&secrets);
            let mut out = Vec::new();
            for chunk in text.chunks(size) {
                out.extend(masker.push(chunk));
            }
            out.extend(masker.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "key *** and *** and sk-secr at the end sk-secret-12",
                "chunks of {size}"
            );
        }
        assert_eq!(mask("a sk-secret-123 b", &secrets), "a *** b".to_owned());
    }
}

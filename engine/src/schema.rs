//! The mission format's JSON Schema, generated from the engine's types.

use crate::mission::MissionFile;

/// The JSON Schema of a mission file, pretty-printed with a trailing newline.
pub fn mission_schema() -> String {
    let schema = schemars::schema_for!(MissionFile);
    let mut text =
        serde_json::to_string_pretty(&schema).expect("a generated schema serialises to JSON");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use crate::mission::model::keys;

    /// The key lists used for "did you mean" are exactly the types' fields.
    #[test]
    fn key_lists_match_the_types() {
        let schema: serde_json::Value = serde_json::from_str(&super::mission_schema()).unwrap();
        let props = |pointer: &str| -> Vec<String> {
            let mut keys: Vec<String> = schema
                .pointer(pointer)
                .and_then(|p| p.as_object())
                .unwrap_or_else(|| panic!("{pointer}"))
                .keys()
                .cloned()
                .collect();
            keys.sort();
            keys
        };
        let sorted = |list: &[&str]| {
            let mut v: Vec<String> = list.iter().map(|s| s.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(props("/properties"), sorted(keys::MISSION));
        assert_eq!(props("/$defs/Step/properties"), sorted(keys::STEP));
        assert_eq!(props("/$defs/Defaults/properties"), sorted(keys::DEFAULTS));
        assert_eq!(props("/$defs/AgentProfile/properties"), sorted(keys::AGENT));
        assert_eq!(props("/$defs/Price/properties"), sorted(keys::PRICE));
    }
}

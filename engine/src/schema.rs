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

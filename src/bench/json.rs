//! The JSON lines of `resflow bench --json`: objects whose keys keep their insertion order and
//! whose numbers keep the fixed decimals they were formatted with (serde_json would print the
//! shortest round-trip form instead, and scripts already compare these strings).

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

use crate::gpu::Gpu;

/// One JSON object, keys in insertion order, values already-serialized JSON.
#[derive(Debug, Default)]
pub struct JsonObject(Vec<(String, Box<RawValue>)>);

impl JsonObject {
    pub fn new() -> Self {
        Self::default()
    }

    /// A string value (escaped by serde_json).
    pub fn str(mut self, key: &str, value: &str) -> Self {
        let raw = serde_json::value::to_raw_value(value).expect("a string serializes");
        self.0.push((key.to_string(), raw));
        self
    }

    /// A number written exactly as `formatted` (e.g. `format!("{x:.4}")`). Non-finite values
    /// have no JSON form; they become `null`.
    pub fn num(mut self, key: &str, formatted: String) -> Self {
        let raw = RawValue::from_string(formatted).unwrap_or_else(|_| raw_null());
        self.0.push((key.to_string(), raw));
        self
    }

    /// The run's description keys after the row's own (which include its precision).
    pub fn with_run(self, run: &RunInfo) -> Self {
        self.str("adapter", &run.adapter)
            .str("driver", &run.driver)
            .str("backend", &run.backend)
            .str("profile", run.profile)
    }

    pub fn line(&self) -> String {
        serde_json::to_string(self).expect("raw values serialize")
    }
}

fn raw_null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// What a row was measured on, so rows from different machines or drivers are not confused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    pub adapter: String,
    /// Driver name and driver info, as `resflow info` prints them.
    pub driver: String,
    /// The wgpu backend, `{:?}`-formatted (`Vulkan`, `Metal`, ...).
    pub backend: String,
    /// `gpu` or `cpu`: the profile the engine's policies followed.
    pub profile: &'static str,
}

impl RunInfo {
    pub fn of(gpu: &Gpu) -> Self {
        let i = gpu.info();
        RunInfo {
            adapter: i.name.clone(),
            driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
            backend: format!("{:?}", i.backend),
            profile: gpu.profile().name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_decimals_and_escapes() {
        let line = JsonObject::new().str("kernel", "a\"b").num("ms", format!("{:.4}", 1.5)).num("z", "1".into()).line();
        assert_eq!(line, r#"{"kernel":"a\"b","ms":1.5000,"z":1}"#);
    }

    #[test]
    fn non_finite_numbers_become_null() {
        let line = JsonObject::new().num("gflops", format!("{:.3}", f64::INFINITY)).line();
        assert_eq!(line, r#"{"gflops":null}"#);
    }
}

//! How the queues are declared: the `queue.declare` arguments per queue kind, and the mirroring
//! (`ha-mode`) policy of the mirrored backend: its definition, name and pattern.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use super::QueueKind;
use crate::scenario::RabbitSettings;

/// The arguments of `queue.declare` for a queue of `kind` whose leader goes to the declaring
/// node.
pub fn declare_arguments(kind: QueueKind) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-queue-type"),
        long_string(kind.queue_type()),
    );
    match kind {
        QueueKind::Quorum | QueueKind::Stream => {
            args.insert(
                ShortString::from("x-queue-leader-locator"),
                long_string("client-local"),
            );
        }
        QueueKind::Mirrored => {
            args.insert(
                ShortString::from("x-queue-master-locator"),
                long_string("client-local"),
            );
        }
    }
    args
}

pub(super) fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

/// The mirroring policy of a mirrored backend: (definition, number of copies expected on a
/// cluster of `nodes`). Errors name the offending setting.
pub fn ha_policy(
    settings: &RabbitSettings,
    nodes: usize,
) -> Result<(serde_json::Value, usize), String> {
    let mode = settings.ha_mode.as_deref().unwrap_or("all");
    let sync = settings.ha_sync_mode.as_deref().unwrap_or("automatic");
    if sync != "automatic" && sync != "manual" {
        return Err(format!(
            "ha_sync_mode must be \"automatic\" or \"manual\", got \"{sync}\""
        ));
    }
    let mut def = serde_json::Map::new();
    def.insert("ha-mode".into(), serde_json::Value::from(mode));
    def.insert("ha-sync-mode".into(), serde_json::Value::from(sync));
    let copies = match mode {
        "all" => nodes,
        "exactly" => {
            let n = settings.ha_params.ok_or_else(|| {
                "ha_mode \"exactly\" needs ha_params (the number of copies)".to_string()
            })?;
            if n == 0 {
                return Err("ha_params must be at least 1".to_string());
            }
            def.insert("ha-params".into(), serde_json::Value::from(n));
            (n as usize).min(nodes)
        }
        other => {
            return Err(format!(
                "ha_mode must be \"all\" or \"exactly\", got \"{other}\""
            ))
        }
    };
    Ok((serde_json::Value::Object(def), copies))
}

/// The policy name for the queues of one `setup(prefix, ..)`.
pub fn policy_name(prefix: &str) -> String {
    format!("brokerbench-ha-{prefix}")
}

/// A policy pattern (regular expression) that matches exactly the queues `<prefix>-<i>`.
pub fn policy_pattern(prefix: &str) -> String {
    let mut p = String::from("^");
    for c in prefix.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            p.push('\\');
        }
        p.push(c);
    }
    p.push_str("-[0-9]+$");
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_pattern_matches_only_this_prefix() {
        assert_eq!(policy_pattern("bb-run1"), "^bb-run1-[0-9]+$");
        assert_eq!(policy_pattern("a.b+c"), "^a\\.b\\+c-[0-9]+$");
        assert_eq!(policy_name("bb-run1"), "brokerbench-ha-bb-run1");
    }

    fn settings(mode: Option<&str>, params: Option<u32>, sync: Option<&str>) -> RabbitSettings {
        let mut s: RabbitSettings = match toml::from_str("") {
            Ok(s) => s,
            Err(e) => panic!("default settings: {e}"),
        };
        s.ha_mode = mode.map(str::to_string);
        s.ha_params = params;
        s.ha_sync_mode = sync.map(str::to_string);
        s
    }

    #[test]
    fn ha_policy_definitions() {
        let (def, copies) = ha_policy(&settings(None, None, None), 3).unwrap();
        assert_eq!(
            def,
            serde_json::json!({"ha-mode": "all", "ha-sync-mode": "automatic"})
        );
        assert_eq!(copies, 3);
        let (def, copies) =
            ha_policy(&settings(Some("exactly"), Some(2), Some("manual")), 3).unwrap();
        assert_eq!(
            def,
            serde_json::json!({"ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "manual"})
        );
        assert_eq!(copies, 2);
        assert_eq!(
            ha_policy(&settings(Some("exactly"), Some(5), None), 3)
                .unwrap()
                .1,
            3
        );
        assert!(ha_policy(&settings(Some("exactly"), None, None), 3)
            .unwrap_err()
            .contains("ha_params"));
        assert!(ha_policy(&settings(Some("nodes"), None, None), 3)
            .unwrap_err()
            .contains("ha_mode"));
        assert!(ha_policy(&settings(None, None, Some("eager")), 3)
            .unwrap_err()
            .contains("ha_sync_mode"));
    }

    #[test]
    fn declare_arguments_per_kind() {
        let get = |t: &FieldTable, k: &str| t.inner().get(k).cloned();
        let q = declare_arguments(QueueKind::Quorum);
        assert_eq!(get(&q, "x-queue-type"), Some(long_string("quorum")));
        assert_eq!(
            get(&q, "x-queue-leader-locator"),
            Some(long_string("client-local"))
        );
        let s = declare_arguments(QueueKind::Stream);
        assert_eq!(get(&s, "x-queue-type"), Some(long_string("stream")));
        let m = declare_arguments(QueueKind::Mirrored);
        assert_eq!(get(&m, "x-queue-type"), Some(long_string("classic")));
        assert_eq!(
            get(&m, "x-queue-master-locator"),
            Some(long_string("client-local"))
        );
        assert_eq!(get(&m, "x-queue-leader-locator"), None);
    }
}

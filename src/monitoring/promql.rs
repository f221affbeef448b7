//! The metric names a PromQL expression reads (for the test that checks the Grafana dashboard
//! and prometheus.csv's queries against real scrapes): identifiers outside label matchers,
//! ranges and strings, less functions (an identifier before `(`), aggregation operators,
//! keywords, the label lists of by/without/on/ignoring/group_left/group_right, and Grafana
//! variables (`$x`, `${x}`).

/// Aggregation operators and keywords that are never metric names.
const WORDS: [&str; 22] = [
    "sum",
    "avg",
    "min",
    "max",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
];
/// Keywords followed by a label list in parentheses.
const LABEL_LISTS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// The distinct metric names in `expr`, in order of appearance.
pub fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names: Vec<String> = Vec::new();
    let mut i = 0;
    // Set after a label-list keyword: the next parenthesised list holds label names.
    let mut label_list = false;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while i < chars.len() && chars[i] != close {
                    if chars[i] == '"' || chars[i] == '\'' {
                        let q = chars[i];
                        i += 1;
                        while i < chars.len() && chars[i] != q {
                            i += if chars[i] == '\\' { 2 } else { 1 };
                        }
                    }
                    i += 1;
                }
                i += 1;
            }
            '(' if label_list => {
                while i < chars.len() && chars[i] != ')' {
                    i += 1;
                }
                i += 1;
                label_list = false;
            }
            '$' => {
                // A Grafana variable: $name or ${name}.
                i += 1;
                if chars.get(i) == Some(&'{') {
                    while i < chars.len() && chars[i] != '}' {
                        i += 1;
                    }
                    i += 1;
                } else {
                    while i < chars.len() && ident_char(chars[i]) {
                        i += 1;
                    }
                }
            }
            c if c.is_ascii_digit() || c == '.' => {
                // A number (with exponent or duration unit letters).
                while i < chars.len() && (ident_char(chars[i]) || chars[i] == '.') {
                    i += 1;
                }
            }
            c if ident_start(c) => {
                let start = i;
                while i < chars.len() && ident_char(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let next = chars[i..].iter().find(|c| !c.is_whitespace());
                if LABEL_LISTS.contains(&word.as_str()) {
                    label_list = true;
                } else if next != Some(&'(')
                    && !WORDS.contains(&word.as_str())
                    && !names.contains(&word)
                    && word != "offset"
                {
                    names.push(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_found_and_the_rest_left_out() {
        assert_eq!(
            metric_names("sum by (backend) (rate(brokerbench_sent_total{backend=~\"$backend\"}[$__rate_interval]))"),
            ["brokerbench_sent_total"]
        );
        assert_eq!(
            metric_names(
                "histogram_quantile(0.99, x_bucket) / on(instance) group_left(job) up offset 5m"
            ),
            ["x_bucket", "up"]
        );
        assert_eq!(
            metric_names("redis_memory_used_bytes > bool 1e6 and count without (cmd) (redis_commands_total{cmd='xadd'})"),
            ["redis_memory_used_bytes", "redis_commands_total"]
        );
        assert_eq!(
            metric_names("max by(instance)(rabbitmq_queue_messages_ready) * 2"),
            ["rabbitmq_queue_messages_ready"]
        );
        assert!(metric_names("vector(1) + time()").is_empty());
    }
}

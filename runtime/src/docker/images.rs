//! Image references and the operator's allowlist of them.

/// Normalises a reference: a name without tag or digest means `:latest`.
pub fn normalize(reference: &str) -> String {
    let name_part = reference.rsplit('/').next().unwrap_or(reference);
    if reference.contains('@') || name_part.contains(':') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    }
}

/// Allowed images: exact references, or prefixes ending in `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageAllowlist {
    patterns: Vec<String>,
}

impl ImageAllowlist {
    /// An allowlist of `patterns` (`busybox:1.36`, `registry.local/ci/*`, `*`).
    pub fn new(patterns: impl IntoIterator<Item = String>) -> Self {
        Self {
            patterns: patterns.into_iter().collect(),
        }
    }

    /// Whether `reference` may run.
    pub fn allows(&self, reference: &str) -> bool {
        let image = normalize(reference);
        self.patterns
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => image.starts_with(prefix),
                None => normalize(pattern) == image,
            })
    }

    /// The patterns, for messages.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_tags() {
        assert_eq!(normalize("busybox"), "busybox:latest");
        assert_eq!(
            normalize("localhost:5000/ci/runner"),
            "localhost:5000/ci/runner:latest"
        );
        assert_eq!(normalize("runner:1.0"), "runner:1.0");
        assert_eq!(normalize("runner@sha256:ab"), "runner@sha256:ab");
    }

    #[test]
    fn exact_names_and_prefix_globs() {
        let list = ImageAllowlist::new(["busybox".to_string(), "registry.local/ci/*".to_string()]);
        assert!(list.allows("busybox:latest"));
        assert!(list.allows("busybox"));
        assert!(!list.allows("busybox:1.36"));
        assert!(list.allows("registry.local/ci/runner:2"));
        assert!(!list.allows("registry.local/other:1"));
        assert!(!ImageAllowlist::default().allows("busybox"));
        assert!(ImageAllowlist::new(["*".to_string()]).allows("anything:1"));
    }
}

//! What `rtgtd --version` prints: the version and the cargo features this binary was
//! built with, so an administrator can tell an `rtgt` package from an `rtgt-rbd` one
//! (and a hand build from either) without reading package metadata.

/// The optional cargo features compiled in. A new feature (glfs, iser, ...) adds its
/// line here.
pub const FEATURES: &[&str] = &[
    #[cfg(feature = "rbd")]
    "rbd",
    #[cfg(feature = "glfs")]
    "glfs",
    #[cfg(feature = "rdma")]
    "rdma",
];

/// `0.1.0 (features: rbd)`, or `(features: none)`.
pub fn version() -> String {
    let features = if FEATURES.is_empty() {
        "none".to_string()
    } else {
        FEATURES.join(", ")
    };
    format!("{} (features: {features})", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn version_lists_the_features_built_in() {
        let v = super::version();
        assert!(v.starts_with(concat!(env!("CARGO_PKG_VERSION"), " (features: ")));
        assert_eq!(v.contains("rbd"), cfg!(feature = "rbd"));
        assert_eq!(v.contains("glfs"), cfg!(feature = "glfs"));
    }
}

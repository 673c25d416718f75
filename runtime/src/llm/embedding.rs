//! The `local` embedding backend and the checks every embedding passes.
//!
//! Local embeddings need no server: each token is hashed (blake3) into a
//! bucket with a sign (the hashing trick), term counts are damped with
//! `1 + ln(tf)`, and the vector is L2-normalised. Deterministic across runs
//! and machines; similar texts get similar vectors, which is what retrieval
//! prototypes and tests need, not semantic quality.

use crate::failure::TaskFailure;

/// Default dimension (SPLAI's default).
pub const DEFAULT_DIMENSION: usize = 384;
/// Largest dimension accepted.
pub const MAX_DIMENSION: usize = 16_384;

/// The local embedding of `text` with `dimension` components.
pub fn local(text: &str, dimension: usize) -> Vec<f32> {
    let mut counts: std::collections::HashMap<String, f32> = std::collections::HashMap::new();
    for token in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
    {
        *counts.entry(token.to_lowercase()).or_insert(0.0) += 1.0;
    }
    let mut vector = vec![0f32; dimension];
    for (token, tf) in counts {
        let hash = blake3::hash(token.as_bytes());
        let bytes = hash.as_bytes();
        let bucket = (u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
            % dimension as u64) as usize;
        let sign = if bytes[8] & 1 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign * (1.0 + tf.ln());
    }
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// Checks a batch: finite numbers, one dimension for all (and the expected
/// one, if given), nothing empty.
pub fn validate(vectors: &[Vec<f32>], expected: Option<usize>) -> Result<usize, TaskFailure> {
    let first = vectors
        .first()
        .ok_or_else(|| TaskFailure::backend_unavailable("the backend returned no embeddings"))?;
    let dimension = first.len();
    if dimension == 0 {
        return Err(TaskFailure::backend_unavailable(
            "the backend returned an empty embedding",
        ));
    }
    if let Some(want) = expected
        && want != dimension
    {
        return Err(TaskFailure::invalid_input(format!(
            "the backend returned {dimension}-dimensional embeddings, not the {want} asked for"
        )));
    }
    for (i, v) in vectors.iter().enumerate() {
        if v.len() != dimension {
            return Err(TaskFailure::backend_unavailable(format!(
                "embedding {i} has {} components, the first has {dimension}",
                v.len()
            )));
        }
        if let Some(bad) = v.iter().position(|x| !x.is_finite()) {
            return Err(TaskFailure::backend_unavailable(format!(
                "embedding {i} has a non-finite value at {bad}"
            )));
        }
    }
    Ok(dimension)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn local_embeddings_are_deterministic_normalised_and_meaningful() {
        let a = local("The cat sat on the mat", 384);
        assert_eq!(a, local("the CAT sat on the mat!", 384));
        assert_eq!(a.len(), 384);
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let near = local("a cat sat on a mat", 384);
        let far = local("quarterly revenue grew in europe", 384);
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.3);
        assert!(local("", 8).iter().all(|v| *v == 0.0));
    }

    #[test]
    fn validation_rejects_nan_ragged_and_wrong_dimensions() {
        assert_eq!(validate(&[vec![0.1, 0.2]], Some(2)).unwrap(), 2);
        assert!(validate(&[vec![0.1, f32::NAN]], None).is_err());
        assert!(validate(&[vec![0.1, f32::INFINITY]], None).is_err());
        assert!(validate(&[vec![0.1, 0.2], vec![0.3]], None).is_err());
        assert!(validate(&[vec![0.1, 0.2]], Some(3)).is_err());
        assert!(validate(&[], None).is_err());
        assert!(validate(&[vec![]], None).is_err());
    }
}

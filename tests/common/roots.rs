//! What a generated legacy root holds, read from the generator's
//! [`Summary`].

use g2a_genroot::Summary;

/// Images nothing builds on: no child image, no container.
pub fn leaf_images(s: &Summary) -> Vec<String> {
    s.images
        .iter()
        .filter(|id| {
            !s.parents.values().any(|p| p.as_deref() == Some(id.as_str())) && !s.containers.iter().any(|c| &c.1 == *id)
        })
        .cloned()
        .collect()
}

//! Ids, names and per-item random streams, all derived from the seed.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Independent random streams, one per purpose and item, so that adding an item
/// or a draw in one place never shifts what another item gets.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Forest = 1,
    ImageIds = 2,
    Image = 3,
    Layer = 4,
    Container = 5,
    Broken = 6,
    Root = 7,
}

/// The random stream for `item` of `purpose`.
pub(crate) fn stream(seed: u64, purpose: Stream, item: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(((purpose as u64) << 48) ^ item);
    rng
}

/// A seed for `item` of `purpose`.
pub(crate) fn seed_for(seed: u64, purpose: Stream, item: u64) -> u64 {
    stream(seed, purpose, item).next_u64()
}

/// 64 lowercase hex characters, the id format of Docker 0.6 and later.
pub(crate) fn hex_id(rng: &mut ChaCha8Rng) -> String {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Docker 0.6's `adjective_scientist` container names.
pub(crate) fn container_name(rng: &mut ChaCha8Rng) -> String {
    const LEFT: &[&str] = &[
        "angry", "boring", "clever", "drunk", "furious", "goofy", "hungry", "jolly", "naughty", "pensive", "sad",
        "sleepy",
    ];
    const RIGHT: &[&str] = &[
        "albattani",
        "bardeen",
        "curie",
        "darwin",
        "einstein",
        "fermi",
        "hawking",
        "lovelace",
        "newton",
        "pike",
        "turing",
    ];
    let l = LEFT[rng.random_range(0..LEFT.len() as u64) as usize];
    let r = RIGHT[rng.random_range(0..RIGHT.len() as u64) as usize];
    format!("{l}_{r}")
}

pub(crate) fn is_hex_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_ids_are_64_lowercase_hex_and_reproducible() {
        let a = hex_id(&mut stream(7, Stream::ImageIds, 0));
        assert!(is_hex_id(&a), "{a}");
        assert_eq!(a, hex_id(&mut stream(7, Stream::ImageIds, 0)));
        assert_ne!(a, hex_id(&mut stream(7, Stream::ImageIds, 1)));
        assert_ne!(a, hex_id(&mut stream(8, Stream::ImageIds, 0)));
    }
}

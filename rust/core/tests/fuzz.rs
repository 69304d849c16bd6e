//! Property tests (fuzzing) of everything that reads stored bytes: the envelope,
//! msgpack framing and delta-chain assembly. Arbitrary, truncated, bit-flipped
//! and hostile-but-checksummed input must give an `Err`, never a panic, a hang
//! or an allocation beyond the stated bounds; valid chains must rebuild exactly.
//! Cases per property: `FC_FUZZ_CASES` (default 2000).

use fastcheckpoint_core::delta::{self, ListState, Policy};
use fastcheckpoint_core::{envelope, wire, Error};
use proptest::collection::vec;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("FC_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

/// Everything that parses stored bytes, fed the same input.
fn read_all_ways(blob: &[u8]) {
    let _ = envelope::open(blob);
    let _ = envelope::info(blob);
    let _ = envelope::delta_base(blob);
    let _ = delta::assemble(&[blob]);
    let _ = wire::split_array(blob);
    if !blob.is_empty() {
        let _ = wire::skip_value(blob, 0, 0);
    }
}

/// An envelope with any flags and header bytes but a correct checksum, so the
/// input gets past the CRC into the header parser, zstd and the delta code.
fn checksummed(flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut blob = vec![b'F', b'C', envelope::VERSION, flags, 0, 0, 0, 0];
    blob.extend_from_slice(rest);
    let mut h = crc32fast::Hasher::new();
    h.update(&blob[..4]);
    h.update(&blob[8..]);
    let crc = h.finalize();
    blob[4..8].copy_from_slice(&crc.to_le_bytes());
    blob
}

fn encode_list(elems: &[Vec<u8>]) -> (Vec<u8>, Vec<usize>) {
    let mut buf = Vec::new();
    let mut bounds = vec![0];
    for e in elems {
        rmp::encode::write_bin(&mut buf, e).unwrap();
        bounds.push(buf.len());
    }
    (buf, bounds)
}

fn whole(elems: &[Vec<u8>]) -> Vec<u8> {
    let (buf, _) = encode_list(elems);
    let mut out = Vec::new();
    wire::write_array_header(&mut out, elems.len());
    out.extend_from_slice(&buf);
    out
}

/// Stores a list's successive values as the writer does (keyframe, delta or
/// segment, rewriting the deltas a segment covers); returns the blobs, oldest first.
fn store_history(history: &[Vec<Vec<u8>>], policy: Policy) -> Vec<Vec<u8>> {
    store_history_with_segments(history, policy).0
}

/// `store_history`, and which versions are segments or keyframes.
fn store_history_with_segments(
    history: &[Vec<Vec<u8>>],
    policy: Policy,
) -> (Vec<Vec<u8>>, Vec<bool>) {
    let mut segments = Vec::new();
    let mut prev: Option<ListState> = None;
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for (i, elems) in history.iter().enumerate() {
        let (buf, bounds) = encode_list(elems);
        let hashes: Vec<u128> = bounds
            .windows(2)
            .map(|w| delta::hash(&buf[w[0]..w[1]]))
            .collect();
        let (stored, state) =
            delta::store(prev.as_ref(), i.to_string(), &buf, &bounds, hashes, policy);
        for (version, pointer) in &stored.rewrites {
            blobs[version.parse::<usize>().unwrap()] = pointer.seal();
        }
        blobs.push(stored.body.seal());
        segments.push(state.depth == 0);
        prev = Some(state);
    }
    (blobs, segments)
}

/// Bytes of the elements each version adds after what it shares with the one
/// before: what any store of the history must write, the floor for its total.
fn changed_bytes(history: &[Vec<Vec<u8>>]) -> usize {
    let mut before: &[Vec<u8>] = &[];
    let mut total = 0;
    for elems in history {
        let same = before.iter().zip(elems).take_while(|(a, b)| a == b).count();
        total += whole(&elems[same..]).len();
        before = elems;
    }
    total
}

/// A long thread: mostly appends of one to four elements (a chat), now and
/// then an edit of the last few (a node rewriting a message) or a removal.
fn long_histories() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    vec((0usize..10, vec(vec(any::<u8>(), 1..200), 1..4)), 50..400).prop_map(|steps| {
        let mut cur: Vec<Vec<u8>> = Vec::new();
        steps
            .into_iter()
            .map(|(edit, add)| {
                if edit == 0 {
                    cur.truncate(cur.len().saturating_sub(2));
                }
                cur.extend(add);
                cur.clone()
            })
            .collect()
    })
}

/// Indices of the chain (newest first) that rebuilds version `i`, following delta bases.
fn chain_of(blobs: &[Vec<u8>], mut i: usize) -> Result<Vec<usize>, Error> {
    let mut chain = vec![i];
    while let Some(base) = envelope::delta_base(&blobs[i])? {
        i = base.parse().map_err(|_| Error::BrokenChain(base))?;
        chain.push(i);
    }
    Ok(chain)
}

fn rebuild(blobs: &[Vec<u8>], i: usize) -> Result<Vec<u8>, Error> {
    let chain: Vec<&[u8]> = chain_of(blobs, i)?
        .into_iter()
        .map(|j| blobs[j].as_slice())
        .collect();
    delta::assemble(&chain)
}

/// A list's evolution: each step drops some trailing elements (an edit or a
/// removal), then appends new ones; element sizes cross the zstd threshold.
fn histories() -> impl Strategy<Value = Vec<Vec<Vec<u8>>>> {
    vec((0usize..4, vec(vec(any::<u8>(), 0..300), 0..5)), 1..25).prop_map(|steps| {
        let mut cur: Vec<Vec<u8>> = Vec::new();
        steps
            .into_iter()
            .map(|(drop, add)| {
                cur.truncate(cur.len().saturating_sub(drop));
                cur.extend(add);
                cur.clone()
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_errors_not_crashes(blob in vec(any::<u8>(), 0..600)) {
        read_all_ways(&blob);
    }

    #[test]
    fn checksummed_hostile_envelopes_are_errors_not_crashes(flags in 0u8..8, rest in vec(any::<u8>(), 0..600)) {
        read_all_ways(&checksummed(flags, &rest));
    }

    #[test]
    fn zstd_frames_claiming_any_size_are_bounded(size in any::<u64>(), blocks in vec(any::<u8>(), 0..64)) {
        // Frame magic, descriptor (8-byte content size, single segment, checksum), size, junk blocks.
        let mut body = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe4];
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(&blocks);
        match envelope::open(&checksummed(1, &body)) {
            Err(_) => {}
            Ok(o) => prop_assert!(o.body.len() as u64 == size && o.body.len() <= envelope::MAX_BODY),
        }
    }

    #[test]
    fn delta_chains_rebuild_every_version(history in histories(), max_depth in 1u32..8) {
        let (blobs, segments) =
            store_history_with_segments(&history, Policy { max_depth, min_len: 2, ..Policy::default() });
        for (i, elems) in history.iter().enumerate() {
            // A read walks at most max_depth deltas (a pointer counts as one), then segments.
            let deltas = chain_of(&blobs, i).unwrap().iter().filter(|&&j| !segments[j]).count();
            prop_assert!(deltas as u32 <= max_depth);
            prop_assert_eq!(rebuild(&blobs, i).unwrap(), whole(elems));
        }
    }

    #[test]
    fn damage_anywhere_in_a_chain_is_an_error(
        history in histories(),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        bit in 0u8..8,
        cut in any::<bool>(),
    ) {
        let mut blobs = store_history(&history, Policy { max_depth: 4, min_len: 2, ..Policy::default() });
        let latest = blobs.len() - 1;
        // Damage one blob of the latest version's chain.
        let i = *pick.get(&chain_of(&blobs, latest).unwrap());
        let pos = at.index(blobs[i].len());
        if cut {
            blobs[i].truncate(pos);
        } else {
            blobs[i][pos] ^= 1 << bit;
        }
        prop_assert!(rebuild(&blobs, latest).is_err(), "damaged chain rebuilt without an error");
    }
}

proptest! {
    // Each case stores and rebuilds hundreds of versions: a twentieth of the cases.
    #![proptest_config(ProptestConfig { cases: cases() / 20, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn stored_bytes_are_linear_and_reads_bounded(history in long_histories()) {
        let policy = Policy::default();
        let blobs = store_history(&history, policy);
        // Total: each element is stored by the delta that brings it, then once
        // more by the segment that covers that delta, which empties the delta;
        // an edit can leave a delta uncovered, and an edit that keeps under
        // half the list forces a keyframe (at most twice what changed).
        // Envelope headers are the fixed cost.
        let header = 64;
        let total: usize = blobs.iter().map(Vec::len).sum();
        let floor = changed_bytes(&history);
        let most = 3.0 * floor as f64;
        prop_assert!(total as f64 <= most + (header * blobs.len()) as f64, "stored {total} for {floor} changed");
        for (i, elems) in history.iter().enumerate() {
            let chain = chain_of(&blobs, i).unwrap();
            let read: usize = chain.iter().map(|&j| blobs[j].len()).sum();
            let own = whole(elems).len();
            // A delta is written only while a read of it touches at most
            // 2 (1 + ratio) times its bytes, a segment at most twice its
            // bytes; a version a segment covers is read through it, and the
            // segment holds at most `ratio` times more (plus the last delta).
            let most = 2.0 * (1.0 + policy.ratio) * own as f64;
            prop_assert!(read as f64 <= most + (header * chain.len()) as f64, "version {i}: read {read} for {own}");
            prop_assert_eq!(rebuild(&blobs, i).unwrap(), whole(elems));
        }
    }
}

/// 3,000 versions of a growing thread (one to four new elements each, an
/// edit of the last two now and then): what a keyframe every N deltas makes
/// quadratic must stay within a constant of what changed, at every length.
#[test]
fn a_long_thread_stays_linear() {
    // Incompressible bytes (an LCG), so that zstd cannot hide repeated keyframes.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect()
    };
    let mut cur: Vec<Vec<u8>> = Vec::new();
    let mut history = Vec::new();
    for step in 0..3000usize {
        if step % 50 == 49 {
            cur.truncate(cur.len() - 2);
        }
        for _ in 0..1 + step % 4 {
            cur.push(noise(20 + step % 97));
        }
        history.push(cur.clone());
    }
    let policy = Policy::default();
    let blobs = store_history(&history, policy);
    for n in [300, 1000, 3000] {
        let total: usize = blobs[..n].iter().map(Vec::len).sum();
        let floor = changed_bytes(&history[..n]);
        assert!(
            total as f64 <= 3.0 * floor as f64 + (64 * n) as f64,
            "{n} versions: stored {total} for {floor} changed bytes"
        );
    }
}

//! Element-level list deltas, compacted into segments.
//!
//! A list channel value is stored either as a keyframe (the whole msgpack array)
//! or as a delta against an earlier stored version of the same channel:
//! `base[..keep] + new elements`. The writer keeps, per channel, the 128-bit
//! hashes of the last stored elements; the common prefix of old and new hashes
//! decides `keep`. Every element is re-encoded and re-hashed on every put, so a
//! message mutated in place (at any depth) changes its hash and is stored again:
//! nothing is ever persisted stale.
//!
//! Each put's delta holds the few elements it added, which compress poorly on
//! their own. So once the deltas since the last *segment* (a keyframe, or a
//! delta on the segment before) weigh `ratio` times it, or number `max_depth`,
//! the next version is stored as a new segment: a delta on the last segment
//! holding every element added since, compressed together. The deltas it
//! covers are then *rewritten* as pointers to it (`segment[..their length]`,
//! no body): each version still rebuilds to exactly the same list, and each
//! element ends up stored once, in the segment that brought it. A read of a
//! version walks at most `max_depth` deltas, then segments.

use crate::envelope::{self, DeltaHeader, Unsealed};
use crate::wire;
use crate::{Error, Result};

/// The segment the next compaction builds on: the last keyframe or segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub version: String,
    /// Encoded bytes of its elements.
    pub bytes: usize,
    /// How many of its leading elements the latest list still begins with.
    pub shared: usize,
    /// Element bytes a read of it touches (its chain's bodies).
    pub read: usize,
}

/// What the writer remembers about the last stored version of one list channel.
#[derive(Debug, Clone)]
pub struct ListState {
    pub version: String,
    pub hashes: Vec<u128>,
    pub segment: Segment,
    /// Versions stored as deltas since the segment whose lists the latest still
    /// begins with, and their lengths: what the next segment rewrites.
    pub pending: Vec<(String, usize)>,
    /// Number of deltas since the segment.
    pub depth: u32,
    /// Encoded bytes of the elements the deltas since the segment stored.
    pub pending_bytes: usize,
    /// Element bytes a read of this version touches.
    pub read: usize,
}

/// How one version of a list is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// The whole list.
    Keyframe,
    /// `previous version[..keep]` + the rest.
    Delta { keep: usize },
    /// `segment[..keep]` + the rest, and the pending deltas become pointers to it.
    Segment { keep: usize },
}

impl ListState {
    /// The state once `hashes` (elements delimited by `bounds`) are stored as
    /// version `version` following `plan`.
    pub fn after(
        prev: Option<&ListState>,
        version: String,
        hashes: Vec<u128>,
        bounds: &[usize],
        plan: Plan,
    ) -> ListState {
        let total = bounds.last().copied().unwrap_or(0);
        let n = hashes.len();
        let fresh = |read: usize| Segment {
            version: version.clone(),
            bytes: total,
            shared: n,
            read,
        };
        match (plan, prev) {
            (Plan::Delta { keep }, Some(p)) => {
                let added = total - bounds[keep];
                let mut pending: Vec<(String, usize)> = p
                    .pending
                    .iter()
                    .filter(|(_, len)| *len <= keep)
                    .cloned()
                    .collect();
                pending.push((version.clone(), n));
                ListState {
                    segment: Segment {
                        shared: p.segment.shared.min(keep),
                        ..p.segment.clone()
                    },
                    pending,
                    depth: p.depth + 1,
                    pending_bytes: p.pending_bytes + added,
                    read: p.read + added,
                    version,
                    hashes,
                }
            }
            (Plan::Segment { keep }, Some(p)) => {
                let read = p.segment.read + total - bounds[keep];
                ListState {
                    segment: fresh(read),
                    pending: Vec::new(),
                    depth: 0,
                    pending_bytes: 0,
                    read,
                    version,
                    hashes,
                }
            }
            _ => ListState {
                segment: fresh(total),
                pending: Vec::new(),
                depth: 0,
                pending_bytes: 0,
                read: total,
                version,
                hashes,
            },
        }
    }
}

/// When to compact deltas into a segment, and when to start afresh.
///
/// Segments are written once the deltas since the last one would outweigh
/// `ratio` times it (so early on, while the list is short, they fall at
/// geometric intervals of its size) or number `max_depth` (so a read walks
/// few rows however long the thread). A version is stored whole when a read
/// of it would touch more than about twice its own bytes (an edit that keeps
/// little of the list, or a list that shrank).
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Deltas since the segment may weigh up to this fraction of it.
    pub ratio: f64,
    /// Most deltas since the segment.
    pub max_depth: u32,
    /// Lists shorter than this are always stored whole.
    pub min_len: usize,
}

impl Default for Policy {
    fn default() -> Self {
        // 64 one-message deltas compress together to about 0.42x the text
        // (the whole thread at once: 0.36x; one message alone: 0.86x), and a
        // read then walks at most 64 deltas plus one segment per 64 puts.
        Policy {
            ratio: 0.25,
            max_depth: 64,
            min_len: 4,
        }
    }
}

/// Hash of one encoded element.
pub fn hash(elem: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(elem)
}

/// Number of leading elements `old` and `new` share.
pub fn common_prefix(old: &[u128], new: &[u128]) -> usize {
    old.iter().zip(new).take_while(|(a, b)| a == b).count()
}

/// Decides how to store the list whose element hashes are `new_hashes` and
/// whose encoded elements end at `bounds`, given the channel's last stored
/// version `prev`.
pub fn plan(
    prev: Option<&ListState>,
    new_hashes: &[u128],
    bounds: &[usize],
    policy: Policy,
) -> Plan {
    let n = new_hashes.len();
    let Some(prev) = prev.filter(|_| n >= policy.min_len) else {
        return Plan::Keyframe;
    };
    let keep = common_prefix(&prev.hashes, new_hashes);
    let total = bounds[n];
    // A delta that keeps less than half of the list saves little: start afresh.
    if keep == 0 || keep * 2 < n {
        return Plan::Keyframe;
    }
    let added = total - bounds[keep];
    let seg = &prev.segment;
    let due = prev.depth + 1 >= policy.max_depth
        || (prev.pending_bytes + added) as f64 > policy.ratio * seg.bytes as f64;
    if !due {
        let within = (prev.read + added) as f64 <= 2.0 * (1.0 + policy.ratio) * total as f64;
        return if within {
            Plan::Delta { keep }
        } else {
            Plan::Keyframe
        };
    }
    let keep = keep.min(seg.shared);
    let read = seg.read + total - bounds[keep];
    if keep == 0 || keep * 2 < n || read > 2 * total {
        Plan::Keyframe
    } else {
        Plan::Segment { keep }
    }
}

/// A version stored as it is planned: its body, the version it applies to,
/// and the stored versions to rewrite as pointers to it (a segment's).
#[derive(Debug)]
pub struct Stored {
    pub body: Unsealed,
    pub base: Option<String>,
    pub rewrites: Vec<(String, Unsealed)>,
}

/// What storing version `version` (its encoded elements, their boundaries
/// and hashes) after `prev` writes, and the writer's state afterwards.
pub fn store(
    prev: Option<&ListState>,
    version: String,
    elems: &[u8],
    bounds: &[usize],
    hashes: Vec<u128>,
    policy: Policy,
) -> (Stored, ListState) {
    let plan = plan(prev, &hashes, bounds, policy);
    let stored = match (plan, prev) {
        (Plan::Delta { keep }, Some(p)) => Stored {
            body: list_body(elems, bounds, Some((keep, &p.version))),
            base: Some(p.version.clone()),
            rewrites: Vec::new(),
        },
        (Plan::Segment { keep }, Some(p)) => {
            // The deltas whose lists this one still begins with become pointers.
            let still = common_prefix(&p.hashes, &hashes);
            let rewrites = p
                .pending
                .iter()
                .filter(|(_, len)| *len <= still)
                .map(|(v, len)| (v.clone(), pointer(&version, *len)))
                .collect();
            Stored {
                body: list_body(elems, bounds, Some((keep, &p.segment.version))),
                base: Some(p.segment.version.clone()),
                rewrites,
            }
        }
        _ => Stored {
            body: list_body(elems, bounds, None),
            base: None,
            rewrites: Vec::new(),
        },
    };
    (
        stored,
        ListState::after(prev, version, hashes, bounds, plan),
    )
}

/// The first `len` elements of version `base`, with no body of its own.
fn pointer(base: &str, len: usize) -> Unsealed {
    Unsealed {
        body: Vec::new(),
        delta: Some(DeltaHeader {
            base: base.to_owned(),
            keep: len as u32,
            total: len as u32,
        }),
    }
}

/// Seals a list value given its encoded elements (concatenated, with their
/// boundaries) as a keyframe or, when `keep` is given, as a delta on `base`.
pub fn seal_list(elems: &[u8], bounds: &[usize], keep: Option<(usize, &str)>) -> Vec<u8> {
    list_body(elems, bounds, keep).seal()
}

/// What `seal_list` seals: the keyframe's array, or the delta's new elements
/// and header.
pub fn list_body(elems: &[u8], bounds: &[usize], keep: Option<(usize, &str)>) -> Unsealed {
    let n = bounds.len().saturating_sub(1);
    match keep {
        Some((keep, base)) => Unsealed {
            body: elems[bounds[keep]..].to_vec(),
            delta: Some(DeltaHeader {
                base: base.to_owned(),
                keep: keep as u32,
                total: n as u32,
            }),
        },
        None => {
            let mut body = Vec::with_capacity(elems.len() + 5);
            wire::write_array_header(&mut body, n);
            body.extend_from_slice(elems);
            Unsealed { body, delta: None }
        }
    }
}

/// Rebuilds the full msgpack value from a chain of envelopes, newest first,
/// ending with a keyframe. Each delta must name the next blob as its base
/// (the caller looks bases up by version; `bases[i]` is the version of chain[i]).
pub fn assemble(chain: &[&[u8]]) -> Result<Vec<u8>> {
    let opened = open_chain(chain)?;
    if let [keyframe] = opened.as_slice() {
        return Ok(keyframe.body.to_vec());
    }
    let (elems, _) = elements(&opened)?;
    let size: usize = elems.iter().map(|e| e.len()).sum();
    let mut out = Vec::with_capacity(size + 5);
    wire::write_array_header(&mut out, elems.len());
    for e in elems {
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// What a writer that did not write a chain (as `assemble`'s, of version
/// `version`) needs to store the next version as a delta on it.
pub fn chain_state(chain: &[&[u8]], version: String, policy: Policy) -> Result<ListState> {
    Ok(chain_contents(chain, version, policy)?.0)
}

/// `chain_state`, with the stored elements' msgpack concatenated and their
/// boundaries (`bounds[i]..bounds[i + 1]` is element `i`): what a writer keeps
/// of a list it encoded itself.
pub fn chain_contents(
    chain: &[&[u8]],
    version: String,
    policy: Policy,
) -> Result<(ListState, Vec<u8>, Vec<usize>)> {
    let opened = open_chain(chain)?;
    let (elems, layers) = elements(&opened)?;
    let mut bytes = Vec::with_capacity(elems.iter().map(|e| e.len()).sum());
    let mut bounds = Vec::with_capacity(elems.len() + 1);
    bounds.push(0);
    for e in &elems {
        bytes.extend_from_slice(e);
        bounds.push(bytes.len());
    }
    let hashes = elems.iter().map(|e| hash(e)).collect();
    Ok((
        state_of(&opened, &layers, version, hashes, policy),
        bytes,
        bounds,
    ))
}

/// The writer's state after a chain it did not write. Which link is the
/// segment is not stored: it is the first (from the newest) that the policy
/// would not have left a plain delta (a keyframe, or one that brought many
/// elements or bytes); a segment taken for a delta is only rewritten as a
/// pointer by the next compaction, which is still exact.
fn state_of(
    opened: &[envelope::Opened<'_>],
    layers: &[Layer],
    version: String,
    hashes: Vec<u128>,
    policy: Policy,
) -> ListState {
    let mut versions = vec![version.clone()];
    versions.extend(
        opened
            .iter()
            .filter_map(|o| o.delta.as_ref().map(|d| d.base.clone())),
    );
    let mut pending = Vec::new();
    let mut shared = usize::MAX;
    let mut pending_bytes = 0;
    let mut seg = opened.len() - 1;
    for (i, o) in opened.iter().enumerate() {
        let Some(d) = &o.delta else { break };
        let (keep, total) = (d.keep as usize, d.total as usize);
        let many = i as u32 >= policy.max_depth
            || total.saturating_sub(keep) >= policy.max_depth as usize
            || (pending_bytes + o.body.len()) as f64 > policy.ratio * layers[i + 1].bytes as f64;
        if many {
            seg = i;
            break;
        }
        if total <= shared {
            pending.push((versions[i].clone(), total));
        }
        shared = shared.min(keep);
        pending_bytes += o.body.len();
    }
    // Element bytes of each link: the keyframe's without its array header.
    let last = opened.len() - 1;
    let read_from =
        |i: usize| opened[i..last].iter().map(|o| o.body.len()).sum::<usize>() + layers[last].bytes;
    ListState {
        segment: Segment {
            version: versions[seg].clone(),
            bytes: layers[seg].bytes,
            shared: shared.min(layers[seg].len),
            read: read_from(seg),
        },
        pending,
        depth: seg as u32,
        pending_bytes,
        read: read_from(0),
        version,
        hashes,
    }
}

/// Opens every envelope of a chain, checking that it ends in a keyframe.
fn open_chain<'a>(chain: &[&'a [u8]]) -> Result<Vec<envelope::Opened<'a>>> {
    let opened = chain
        .iter()
        .map(|b| envelope::open(b))
        .collect::<Result<Vec<_>>>()?;
    match opened.last() {
        None => Err(Error::BrokenChain("empty chain".into())),
        Some(last) if last.delta.is_some() => Err(Error::BrokenChain(
            "chain does not end in a keyframe".into(),
        )),
        Some(_) => Ok(opened),
    }
}

/// The list one link of a chain stores: its element count and bytes.
#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    len: usize,
    bytes: usize,
}

/// The elements of the list an opened chain stores: the keyframe's, with each
/// delta applied from the oldest; and the list each link stores, newest first.
fn elements<'a>(opened: &'a [envelope::Opened<'_>]) -> Result<(Vec<&'a [u8]>, Vec<Layer>)> {
    let (last, deltas) = opened.split_last().expect("open_chain: never empty");
    let mut elems: Vec<&[u8]> = wire::split_array(&last.body)?
        .into_iter()
        .map(|r| &last.body[r])
        .collect();
    // ends[i]: bytes of elements 0..=i.
    let mut ends: Vec<usize> = elems
        .iter()
        .scan(0, |sum, e| {
            *sum += e.len();
            Some(*sum)
        })
        .collect();
    let layer = |ends: &[usize]| Layer {
        len: ends.len(),
        bytes: ends.last().copied().unwrap_or(0),
    };
    let mut layers = vec![layer(&ends)];
    for d in deltas.iter().rev() {
        let h = d.delta.as_ref().expect("non-last chain links are deltas");
        let keep = h.keep as usize;
        if keep > elems.len() {
            return Err(Error::BrokenChain(format!(
                "delta keeps {keep} elements of a base holding {}",
                elems.len()
            )));
        }
        elems.truncate(keep);
        ends.truncate(keep);
        let body: &[u8] = &d.body;
        let mut pos = 0;
        while pos < body.len() {
            let end = wire::skip_value(body, pos, 1)?;
            elems.push(&body[pos..end]);
            ends.push(ends.last().copied().unwrap_or(0) + end - pos);
            pos = end;
        }
        if elems.len() != h.total as usize {
            return Err(Error::BrokenChain(format!(
                "delta announces {} elements, rebuilt {}",
                h.total,
                elems.len()
            )));
        }
        layers.push(layer(&ends));
    }
    layers.reverse();
    Ok((elems, layers))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(items: &[&str]) -> (Vec<u8>, Vec<usize>, Vec<u128>) {
        let mut buf = Vec::new();
        let mut bounds = vec![0];
        let mut hashes = Vec::new();
        for it in items {
            let start = buf.len();
            rmp::encode::write_str(&mut buf, it).unwrap();
            hashes.push(hash(&buf[start..]));
            bounds.push(buf.len());
        }
        (buf, bounds, hashes)
    }

    fn whole(items: &[&str]) -> Vec<u8> {
        let (e, _, _) = encode(items);
        let mut out = Vec::new();
        wire::write_array_header(&mut out, items.len());
        out.extend_from_slice(&e);
        out
    }

    /// Sealed rewrites: (version, pointer).
    type Rewrites = Vec<(String, Vec<u8>)>;

    /// Stores `items` as version `v` after `prev`; returns the sealed blob,
    /// its sealed rewrites and the new state.
    fn put(
        prev: Option<&ListState>,
        v: &str,
        items: &[&str],
        policy: Policy,
    ) -> (Vec<u8>, Rewrites, ListState) {
        let (e, b, h) = encode(items);
        let (stored, state) = store(prev, v.into(), &e, &b, h, policy);
        let rewrites = stored
            .rewrites
            .iter()
            .map(|(v, u)| (v.clone(), u.seal()))
            .collect();
        (stored.body.seal(), rewrites, state)
    }

    #[test]
    fn append_replace_and_truncate_rebuild_exactly() {
        let policy = Policy {
            ratio: 100.0,
            max_depth: 8,
            min_len: 1,
        };
        let v1 = ["a", "b", "c", "d"];
        let v2 = ["a", "b", "c", "d", "e"];
        let v3 = ["a", "b", "c", "X", "e"]; // in-place change of an old element
        let v4 = ["a", "b", "c", "X"]; // removal at the tail
        let (k1, _, s1) = put(None, "1", &v1, policy);
        let (d2, _, s2) = put(Some(&s1), "2", &v2, policy);
        assert_eq!(
            plan(Some(&s1), &encode(&v2).2, &encode(&v2).1, policy),
            Plan::Delta { keep: 4 }
        );
        assert_eq!(
            plan(Some(&s2), &encode(&v3).2, &encode(&v3).1, policy),
            Plan::Delta { keep: 3 },
            "the mutated element is not kept"
        );
        let (d3, _, s3) = put(Some(&s2), "3", &v3, policy);
        let (d4, _, s4) = put(Some(&s3), "4", &v4, policy);

        assert_eq!(assemble(&[&k1]).unwrap(), whole(&v1));
        assert_eq!(assemble(&[&d2, &k1]).unwrap(), whole(&v2));
        assert_eq!(assemble(&[&d3, &d2, &k1]).unwrap(), whole(&v3));
        assert_eq!(assemble(&[&d4, &d3, &d2, &k1]).unwrap(), whole(&v4));
        // A writer that did not write the chain learns the same state from it.
        let learned = |chain: &[&[u8]], v: &str| chain_state(chain, v.into(), policy).unwrap();
        for (chain, s) in [
            (vec![&k1[..]], &s1),
            (vec![&d3[..], &d2, &k1], &s3),
            (vec![&d4[..], &d3, &d2, &k1], &s4),
        ] {
            let l = learned(&chain, &s.version);
            assert_eq!(
                (
                    &l.hashes,
                    &l.segment,
                    &l.pending,
                    l.depth,
                    l.pending_bytes,
                    l.read
                ),
                (
                    &s.hashes,
                    &s.segment,
                    &s.pending,
                    s.depth,
                    s.pending_bytes,
                    s.read
                )
            );
        }
        // Only "4" still begins the latest list: "2" and "3" changed what "4" dropped.
        assert_eq!(s4.pending, vec![("4".to_string(), 4)]);
        assert!(
            chain_state(&[&d2], "2".into(), policy).is_err(),
            "a chain must end in a keyframe"
        );
    }

    #[test]
    fn a_segment_turns_the_deltas_it_covers_into_pointers() {
        let policy = Policy {
            ratio: 100.0,
            max_depth: 3,
            min_len: 1,
        };
        let items: Vec<String> = (0..8).map(|i| format!("message {i}")).collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let mut blobs: Vec<(String, Vec<u8>)> = Vec::new();
        let mut state = None;
        for n in 4..=8 {
            let v = n.to_string();
            let (blob, rewrites, s) = put(state.as_ref(), &v, &refs[..n], policy);
            for (rv, rb) in rewrites {
                let slot = blobs.iter_mut().find(|(bv, _)| *bv == rv).unwrap();
                slot.1 = rb;
            }
            blobs.push((v, blob));
            state = Some(s);
        }
        // 4 keyframe; 5, 6 deltas; 7 the segment (the third delta is due), holding
        // 5..7 on 4, with 5 and 6 rewritten as pointers to it; 8 a delta on 7.
        let find = |v: &str| blobs.iter().find(|(bv, _)| bv == v).unwrap().1.clone();
        let base = |v: &str| envelope::delta_base(&find(v)).unwrap();
        assert_eq!(base("4"), None);
        assert_eq!(base("5").as_deref(), Some("7"));
        assert_eq!(base("6").as_deref(), Some("7"));
        assert_eq!(base("7").as_deref(), Some("4"));
        assert_eq!(base("8").as_deref(), Some("7"));
        assert_eq!(envelope::open(&find("5")).unwrap().body.len(), 0);
        for n in 4..=8 {
            let mut chain = vec![find(&n.to_string())];
            while let Some(b) = envelope::delta_base(chain.last().unwrap()).unwrap() {
                chain.push(find(&b));
            }
            let parts: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
            assert_eq!(assemble(&parts).unwrap(), whole(&refs[..n]), "version {n}");
        }
    }

    #[test]
    fn segments_fall_when_deltas_outweigh_the_last_one() {
        // One element appended per version: a delta each time until the deltas
        // since the segment would weigh more than it, then a segment.
        let items: Vec<String> = (0..200).map(|i| format!("element number {i:04}")).collect();
        let refs: Vec<&str> = items.iter().map(String::as_str).collect();
        let policy = Policy {
            ratio: 1.0,
            max_depth: u32::MAX,
            min_len: 4,
        };
        let mut state: Option<ListState> = None;
        let mut segments = vec![];
        for n in 4..=refs.len() {
            let (_, b, h) = encode(&refs[..n]);
            let p = plan(state.as_ref(), &h, &b, policy);
            if p != (Plan::Delta { keep: n - 1 }) {
                segments.push(n);
            }
            let (_, s) = store(
                state.as_ref(),
                n.to_string(),
                &encode(&refs[..n]).0,
                &b,
                h,
                policy,
            );
            state = Some(s);
        }
        // Each segment about doubles the list (equal-sized elements).
        assert_eq!(segments, vec![4, 9, 19, 39, 79, 159]);
    }

    #[test]
    fn broken_chains_are_errors() {
        let (e, b, _) = encode(&["a", "b"]);
        let d = seal_list(&e, &b, Some((1, "0")));
        assert!(matches!(assemble(&[&d]), Err(Error::BrokenChain(_))));
        let k = seal_list(&e[..0], &b[..1], None);
        assert!(matches!(assemble(&[&d, &k]), Err(Error::BrokenChain(_))));
    }
}

//! Per-flow state of a detector, indexed by the flow's [`FlowHandle`].
//!
//! A detector that follows a flow from `Started` to `Ended` used to find its state in a
//! hash map keyed by uid: a probe (control bytes, then the bucket) into a table as large
//! as the live flows on every event, and its rehashes as the table grew. Handles are
//! dense slab slots, so a 4-byte array indexed by handle points straight at the state:
//! no hashing, no probe sequence, and the final drain (slab order) walks the array in
//! order. The states themselves sit in a compact array of their own, so flows the
//! detector ignores cost 4 bytes, not a state's worth. Records without a handle (the
//! Kafka analytics tier has no flow table) or with one past the cap go to a uid-keyed
//! map, so every event source gets the same answers.

use crate::flow::{FlowHandle, FlowRecord};

/// No state for this handle.
const NO_SLOT: u32 = u32::MAX;

pub struct PerFlow<T> {
    /// Per handle, the slot of its state in `states` (or [`NO_SLOT`]): 4 bytes per
    /// table slot, so flows the detector ignores cost next to nothing.
    at: Vec<u32>,
    /// `(uid, state)`, compact; the uid tells a reused handle from its old flow.
    states: Vec<(u64, T)>,
    /// Free slots of `states`.
    free: Vec<u32>,
    /// Handles at or past this go to `sparse` (bounds `at` whatever the table size).
    dense_cap: usize,
    sparse: hashbrown::HashMap<u64, T>,
    len: usize,
}

impl<T: Default> PerFlow<T> {
    /// `dense_cap`: the most handles indexed directly (the detector's own flow bound).
    pub fn new(dense_cap: usize) -> PerFlow<T> {
        PerFlow {
            at: Vec::new(),
            states: Vec::new(),
            free: Vec::new(),
            dense_cap: dense_cap.min(NO_SLOT as usize),
            sparse: hashbrown::HashMap::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn handle(&self, f: &FlowRecord) -> Option<usize> {
        let i = f.handle.0 as usize;
        (f.handle != FlowHandle::NONE && i < self.dense_cap).then_some(i)
    }

    /// Starts loading the state held for `handle` (see `Detector::prefetch_flow`).
    #[inline]
    pub fn prefetch(&self, handle: FlowHandle) {
        let i = handle.0 as usize;
        if handle == FlowHandle::NONE || i >= self.dense_cap {
            return;
        }
        if let Some(&s) = self.at.get(i) {
            if let Some(st) = self.states.get(s as usize) {
                let p = st as *const (u64, T) as *const u8;
                crate::flow::index::prefetch(p);
                crate::flow::index::prefetch(p.wrapping_add(64));
            }
        }
    }

    /// The slot holding flow `f`'s state, if any.
    fn slot_of(&self, f: &FlowRecord, i: usize) -> Option<usize> {
        let s = *self.at.get(i)?;
        (s != NO_SLOT && self.states[s as usize].0 == f.uid).then_some(s as usize)
    }

    /// Stores `v` for flow `f`, replacing what its handle held (a flow whose end never
    /// came cannot keep a handle from the next one).
    pub fn insert(&mut self, f: &FlowRecord, v: T) {
        let Some(i) = self.handle(f) else {
            if self.sparse.insert(f.uid, v).is_none() {
                self.len += 1;
            }
            return;
        };
        if i >= self.at.len() {
            // Grow by a quarter (amortised O(1)), never past the cap.
            let want = (i + 1)
                .max(self.at.len() + self.at.len() / 4)
                .min(self.dense_cap);
            self.at.reserve_exact(want - self.at.len());
            self.at.resize(want, NO_SLOT);
        }
        match self.at[i] {
            NO_SLOT => {
                let s = match self.free.pop() {
                    Some(s) => {
                        self.states[s as usize] = (f.uid, v);
                        s
                    }
                    None => {
                        self.states.push((f.uid, v));
                        (self.states.len() - 1) as u32
                    }
                };
                self.at[i] = s;
                self.len += 1;
            }
            s => self.states[s as usize] = (f.uid, v),
        }
    }

    pub fn get_mut(&mut self, f: &FlowRecord) -> Option<&mut T> {
        match self.handle(f) {
            Some(i) => {
                let s = self.slot_of(f, i)?;
                Some(&mut self.states[s].1)
            }
            None => self.sparse.get_mut(&f.uid),
        }
    }

    pub fn remove(&mut self, f: &FlowRecord) -> Option<T> {
        let v = match self.handle(f) {
            Some(i) => {
                let s = self.slot_of(f, i)?;
                self.at[i] = NO_SLOT;
                self.free.push(s as u32);
                Some(std::mem::take(&mut self.states[s].1))
            }
            None => self.sparse.remove(&f.uid),
        };
        if v.is_some() {
            self.len -= 1;
        }
        v
    }

    /// Keeps the states for which `keep(uid, state)` holds (eviction: O(handles)).
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &T) -> bool) {
        for a in self.at.iter_mut() {
            if *a == NO_SLOT {
                continue;
            }
            let e = &mut self.states[*a as usize];
            if !keep(e.0, &e.1) {
                e.1 = T::default();
                self.free.push(*a);
                *a = NO_SLOT;
                self.len -= 1;
            }
        }
        let before = self.sparse.len();
        self.sparse.retain(|uid, v| keep(*uid, v));
        self.len -= before - self.sparse.len();
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.at
            .iter()
            .filter(|s| **s != NO_SLOT)
            .map(|s| &self.states[*s as usize].1)
            .chain(self.sparse.values())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{ConnState, History};
    use crate::time::Ts;

    fn rec(uid: u64, handle: FlowHandle) -> FlowRecord {
        FlowRecord {
            uid,
            proto: 6,
            orig: "10.0.0.1".parse().unwrap(),
            orig_port: 1,
            resp: "192.0.2.1".parse().unwrap(),
            resp_port: 2,
            orig_is_internal: true,
            first_ts: Ts::ZERO,
            last_ts: Ts::ZERO,
            orig_pkts: 0,
            resp_pkts: 0,
            orig_bytes: 0,
            resp_bytes: 0,
            orig_ip_bytes: 0,
            resp_ip_bytes: 0,
            conn_state: ConnState::S0,
            history: History::default(),
            orig_first_sizes: [0; 4],
            resp_first_sizes: [0; 4],
            orig_mac: None,
            vlan: 0,
            handle,
        }
    }

    #[test]
    fn a_reused_slot_never_answers_for_its_old_flow() {
        let mut m = PerFlow::new(16);
        let old = rec(7, FlowHandle(3));
        let new = rec(8, FlowHandle(3));
        m.insert(&old, "old");
        assert_eq!(m.get_mut(&new), None);
        assert_eq!(m.remove(&new), None);
        assert_eq!(m.len(), 1);
        // The old flow's end was lost: the new flow takes the slot.
        m.insert(&new, "new");
        assert_eq!(m.len(), 1);
        assert_eq!(m.get_mut(&old), None);
        assert_eq!(m.remove(&new), Some("new"));
        assert!(m.is_empty());
    }

    #[test]
    fn records_without_a_dense_slot_use_the_uid() {
        let mut m = PerFlow::new(4);
        let bus = rec(1, FlowHandle::NONE);
        let far = rec(2, FlowHandle(4));
        let near = rec(3, FlowHandle(0));
        m.insert(&bus, 10);
        m.insert(&far, 20);
        m.insert(&near, 30);
        assert_eq!(m.len(), 3);
        assert!(m.at.len() <= 4, "the direct part stays within its cap");
        *m.get_mut(&far).unwrap() += 1;
        assert_eq!(m.remove(&far), Some(21));
        assert_eq!(m.remove(&bus), Some(10));
        assert_eq!(m.get_mut(&near).copied(), Some(30));
        m.retain(|uid, _| uid != 3);
        assert!(m.is_empty());
        assert_eq!(m.values().count(), 0);
    }

    #[test]
    fn the_array_grows_to_the_highest_handle_only() {
        let mut m = PerFlow::new(1 << 20);
        for i in 0..1000u32 {
            m.insert(&rec(u64::from(i) + 100, FlowHandle(i)), i);
        }
        assert_eq!(m.len(), 1000);
        assert!(m.at.len() >= 1000 && m.at.len() < 1300);
        assert_eq!(m.states.len(), 1000);
        m.retain(|_, v| v % 2 == 0);
        assert_eq!(m.len(), 500);
        assert_eq!(m.values().count(), 500);
        // Freed slots are reused before the state array grows.
        for i in 0..500u32 {
            m.insert(&rec(u64::from(i) + 5000, FlowHandle(1000 + i)), i);
        }
        assert_eq!(m.states.len(), 1000);
        assert_eq!(m.len(), 1000);
    }

    #[test]
    fn prefetch_takes_any_handle() {
        let mut m = PerFlow::new(8);
        m.insert(&rec(1, FlowHandle(2)), 5u64);
        m.remove(&rec(1, FlowHandle(2)));
        // Never stored, freed, past the dense part, none: hints only, nothing changes.
        for h in [0, 2, 7, 8, u32::MAX - 1] {
            m.prefetch(FlowHandle(h));
        }
        m.prefetch(FlowHandle::NONE);
        assert!(m.is_empty());
    }
}

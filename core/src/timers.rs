//! Connection deadlines: one intrusive, deadline-ordered list per concern.
//!
//! Every concern has a fixed duration, so a deadline set later is almost
//! never earlier than one set before it: appending at the tail keeps each
//! list sorted, removal is O(1), and the earliest deadline of a concern is
//! its head. (The exception: an idle connection in the drain waits untimed
//! while the driver counts what its socket holds, and then takes back a
//! deadline that runs from its last response. It is placed by walking back
//! from the tail; the drain asks the counts in timer order, so that the
//! answers, which come in that order, find their place at the tail.) The next deadline of the whole server is the minimum of a handful of
//! heads — no scan of the connection table, no allocation, no periodic tick.
//! A connection is on at most one list, because its state names the one
//! concern that applies to it.

use slab::Slab;

use crate::time::Time;

/// An entry that can sit on a timer list: it holds its own [`Link`], so the
/// lists need no storage of their own.
pub(crate) trait Linked {
    fn link(&self) -> &Link;
    fn link_mut(&mut self) -> &mut Link;
}

/// Which deadline a connection is waiting on.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum TimerKind {
    /// `header_read_timeout`, from a request's first byte.
    Header = 0,
    /// `body_read_timeout`, from the last body progress.
    Body = 1,
    /// `keep_alive_timeout` while serving; `idle_close_after` while draining.
    Idle = 2,
    /// For a connection that has not begun a request: `new_connection_timeout`
    /// while serving, `first_byte_grace` while draining.
    FirstByte = 3,
    /// `write_stall_timeout`, from the last write progress.
    Write = 4,
    /// `linger_timeout`, from the half-close.
    Linger = 5,
}

const KINDS: usize = 6;
const NIL: u32 = u32::MAX;

/// A connection's place on a timer list.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Link {
    kind: Option<TimerKind>,
    deadline: Time,
    prev: u32,
    next: u32,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            kind: None,
            deadline: Time::ZERO,
            prev: NIL,
            next: NIL,
        }
    }
}

impl TimerKind {
    /// Whether this is a timer of an idle connection: `Idle` or `FirstByte`.
    pub fn is_idle(self) -> bool {
        matches!(self, TimerKind::Idle | TimerKind::FirstByte)
    }
}

impl Link {
    pub fn kind(&self) -> Option<TimerKind> {
        self.kind
    }

    pub fn deadline(&self) -> Time {
        self.deadline
    }
}

/// Heads and tails of the per-concern lists.
#[derive(Debug)]
pub(crate) struct Timers {
    head: [u32; KINDS],
    tail: [u32; KINDS],
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            head: [NIL; KINDS],
            tail: [NIL; KINDS],
        }
    }
}

impl Timers {
    /// Puts connection `key` on the `kind` list (leaving any list it was on),
    /// in deadline order: at the tail, unless `deadline` is earlier than the
    /// tail's.
    // Inlined, like `clear`: `settle` moves a connection between lists
    // several times per request, and the call costs as much as the move.
    #[inline]
    pub fn set<C: Linked>(
        &mut self,
        conns: &mut Slab<C>,
        key: usize,
        kind: TimerKind,
        deadline: Time,
    ) {
        self.unlink(conns, key);
        let k = kind as usize;
        let mut prev = self.tail[k];
        if prev != NIL && conns[prev as usize].link().deadline > deadline {
            prev = Self::last_due_by(conns, prev, deadline);
        }
        let next = match prev {
            NIL => std::mem::replace(&mut self.head[k], key as u32),
            prev => std::mem::replace(&mut conns[prev as usize].link_mut().next, key as u32),
        };
        match next {
            NIL => self.tail[k] = key as u32,
            next => conns[next as usize].link_mut().prev = key as u32,
        }
        *conns[key].link_mut() = Link {
            kind: Some(kind),
            deadline,
            prev,
            next,
        };
    }

    /// The last entry from `from` back that is due by `deadline` (`NIL` if
    /// none is): where a deadline earlier than its list's tail goes. Rare,
    /// so out of line.
    #[cold]
    #[inline(never)]
    fn last_due_by<C: Linked>(conns: &Slab<C>, from: u32, deadline: Time) -> u32 {
        let mut at = from;
        while at != NIL && conns[at as usize].link().deadline > deadline {
            at = conns[at as usize].link().prev;
        }
        at
    }

    /// Takes connection `key` off whatever list it is on.
    #[inline]
    pub fn clear<C: Linked>(&mut self, conns: &mut Slab<C>, key: usize) {
        if self.unlink(conns, key) {
            *conns[key].link_mut() = Link::default();
        }
    }

    /// Links the neighbours of connection `key` past it, leaving its own
    /// link for the caller to overwrite; false if it was on no list.
    #[inline]
    fn unlink<C: Linked>(&mut self, conns: &mut Slab<C>, key: usize) -> bool {
        let link = *conns[key].link();
        let Some(kind) = link.kind else { return false };
        let k = kind as usize;
        match link.prev {
            NIL => self.head[k] = link.next,
            prev => conns[prev as usize].link_mut().next = link.next,
        }
        match link.next {
            NIL => self.tail[k] = link.prev,
            next => conns[next as usize].link_mut().prev = link.prev,
        }
        true
    }

    /// The earliest deadline of any connection.
    pub fn earliest<C: Linked>(&self, conns: &Slab<C>) -> Option<Time> {
        self.head
            .iter()
            .filter(|&&h| h != NIL)
            .map(|&h| conns[h as usize].link().deadline)
            .min()
    }

    /// A connection on the `kind` list whose deadline is at or before `now`.
    pub fn expired<C: Linked>(&self, conns: &Slab<C>, kind: TimerKind, now: Time) -> Option<usize> {
        let head = self.head[kind as usize];
        (head != NIL && conns[head as usize].link().deadline <= now).then_some(head as usize)
    }

    /// The first connection on the `kind` list.
    pub fn first(&self, kind: TimerKind) -> Option<usize> {
        let head = self.head[kind as usize];
        (head != NIL).then_some(head as usize)
    }

    /// The connection after `key` on its list.
    pub fn after<C: Linked>(&self, conns: &Slab<C>, key: usize) -> Option<usize> {
        let next = conns[key].link().next;
        (next != NIL).then_some(next as usize)
    }

    /// Checks that each list is linked both ways and ordered, and that every
    /// connection that says it is on a list is on it: `claimed` counts those
    /// that say so, which the caller counts in its own pass over the table.
    pub fn check<C: Linked>(&self, conns: &Slab<C>, claimed: usize) -> Result<(), String> {
        let mut on_lists = 0;
        for k in 0..KINDS {
            let mut prev = NIL;
            let mut at = self.head[k];
            let mut last_deadline = Time::ZERO;
            while at != NIL {
                let link = conns[at as usize].link();
                if link.kind.map(|kind| kind as usize) != Some(k) || link.prev != prev {
                    return Err(format!("timer list {k} is mislinked at {at}"));
                }
                if link.deadline < last_deadline {
                    return Err(format!("timer list {k} is out of order at {at}"));
                }
                last_deadline = link.deadline;
                on_lists += 1;
                prev = at;
                at = link.next;
            }
            if self.tail[k] != prev {
                return Err(format!("timer list {k} has a stale tail"));
            }
        }
        if claimed != on_lists {
            return Err(format!(
                "{claimed} connections claim a timer, {on_lists} are on lists"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Entry(Link);

    impl Linked for Entry {
        fn link(&self) -> &Link {
            &self.0
        }
        fn link_mut(&mut self) -> &mut Link {
            &mut self.0
        }
    }

    /// The entries that claim a timer, as the server counts them.
    fn claimed(conns: &Slab<Entry>) -> usize {
        conns.iter().filter(|(_, e)| e.0.kind.is_some()).count()
    }

    /// Three entries on the `Idle` list, in deadline order.
    fn three() -> (Timers, Slab<Entry>) {
        let mut timers = Timers::default();
        let mut conns = Slab::new();
        for i in 0..3 {
            let key = conns.insert(Entry::default());
            timers.set(&mut conns, key, TimerKind::Idle, Time::from_millis(i));
        }
        (timers, conns)
    }

    #[test]
    fn well_linked_lists_pass_the_check() {
        let (mut timers, mut conns) = three();
        assert_eq!(timers.check(&conns, claimed(&conns)), Ok(()));
        timers.clear(&mut conns, 1);
        assert_eq!(timers.check(&conns, claimed(&conns)), Ok(()));
        assert_eq!(timers.first(TimerKind::Idle), Some(0));
        assert_eq!(timers.after(&conns, 0), Some(2));
    }

    /// A deadline earlier than its list's tail goes after the last entry
    /// due by it: before every entry, between two, or after equals.
    #[test]
    fn an_earlier_deadline_takes_its_place_in_order() {
        let (mut timers, mut conns) = three();
        for ms in [1, 0, 1] {
            let key = conns.insert(Entry::default());
            timers.set(&mut conns, key, TimerKind::Idle, Time::from_millis(ms));
            assert_eq!(timers.check(&conns, claimed(&conns)), Ok(()));
        }
        let early = conns.insert(Entry::default());
        timers.set(&mut conns, early, TimerKind::Idle, Time::ZERO);
        let mut order = Vec::new();
        let mut at = timers.first(TimerKind::Idle);
        while let Some(key) = at {
            order.push(key);
            at = timers.after(&conns, key);
        }
        assert_eq!(order, [0, 4, 6, 1, 3, 5, 2]);
        assert_eq!(timers.check(&conns, claimed(&conns)), Ok(()));
        // Taken off, an entry in the middle leaves the list whole.
        timers.clear(&mut conns, 3);
        assert_eq!(timers.check(&conns, claimed(&conns)), Ok(()));
    }

    #[test]
    fn a_wrong_back_link_fails_the_check() {
        let (timers, mut conns) = three();
        conns[2].0.prev = 0;
        let err = timers.check(&conns, claimed(&conns)).unwrap_err();
        assert!(err.contains("mislinked at 2"), "{err}");
    }

    #[test]
    fn an_entry_claiming_another_kind_fails_the_check() {
        let (timers, mut conns) = three();
        conns[1].0.kind = Some(TimerKind::Header);
        let err = timers.check(&conns, claimed(&conns)).unwrap_err();
        assert!(err.contains("mislinked at 1"), "{err}");
    }

    #[test]
    fn a_list_out_of_order_fails_the_check() {
        let (timers, mut conns) = three();
        conns[2].0.deadline = Time::ZERO;
        let err = timers.check(&conns, claimed(&conns)).unwrap_err();
        assert!(err.contains("out of order at 2"), "{err}");
    }
}

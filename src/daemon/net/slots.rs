//! Who gets a connection slot. Three separate bounds, so that junk connections cannot lock out
//! a scanner: connections per peer address, connections still negotiating (accepted but no
//! complete A-ASSOCIATE-RQ yet: junk, port scans, slow peers, each held for at most the
//! negotiation deadline), and established associations (`max_associations`), which are counted
//! only once a whole request has arrived. Every count is held by a [`Ticket`] and released when
//! it drops, so a panicking association thread cannot leak a slot.

use super::access::Refusal;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The three bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Established associations at once.
    pub associations: usize,
    /// Connections still negotiating at once.
    pub negotiating: usize,
    /// Connections (negotiating or established) from one address at once.
    pub per_address: usize,
}

#[derive(Debug, Default)]
struct Counts {
    negotiating: usize,
    established: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The shared counts.
#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    counts: Mutex<Counts>,
}

/// Which count a [`Ticket`] holds besides its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Negotiating,
    Established,
}

/// One connection's share of the counts, released on drop.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    ip: IpAddr,
    stage: Stage,
}

impl Slots {
    /// Empty counts under `limits`.
    pub fn new(limits: SlotLimits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a new connection from `ip` as negotiating, or says which bound it would exceed.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let mut c = self.counts();
        let from_ip = c.per_address.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.per_address {
            return Err(Refusal::TooManyFromAddress);
        }
        if c.negotiating >= self.limits.negotiating {
            return Err(Refusal::TooManyNegotiating);
        }
        c.negotiating += 1;
        *c.per_address.entry(ip).or_insert(0) += 1;
        Ok(Ticket {
            slots: self.clone(),
            ip,
            stage: Stage::Negotiating,
        })
    }

    /// Established associations now.
    pub fn established(&self) -> usize {
        self.counts().established
    }

    /// Connections still negotiating now.
    pub fn negotiating(&self) -> usize {
        self.counts().negotiating
    }
}

impl Ticket {
    /// Moves a negotiating connection to an association slot, if one is free.
    pub fn establish(&mut self) -> Result<(), Refusal> {
        if self.stage == Stage::Established {
            return Ok(());
        }
        let mut c = self.slots.counts();
        if c.established >= self.slots.limits.associations {
            return Err(Refusal::TooManyAssociations);
        }
        c.negotiating -= 1;
        c.established += 1;
        self.stage = Stage::Established;
        Ok(())
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut c = self.slots.counts();
        match self.stage {
            Stage::Negotiating => c.negotiating -= 1,
            Stage::Established => c.established -= 1,
        }
        if let Some(n) = c.per_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_address.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn negotiating_connections_do_not_take_association_slots() {
        let s = Slots::new(SlotLimits {
            associations: 1,
            negotiating: 3,
            per_address: 10,
        });
        let junk: Vec<Ticket> = (0..2).map(|i| s.admit(ip(i)).expect("admit")).collect();
        let mut scanner = s.admit(ip(9)).expect("a third negotiating connection fits");
        scanner
            .establish()
            .expect("two junk connections leave the association slot free");
        assert_eq!((s.established(), s.negotiating()), (1, 2));
        assert_eq!(
            s.admit(ip(8)).map(|_| ()),
            Ok(()),
            "the scanner left the negotiating count"
        );
        let mut second = s.admit(ip(7)).expect("admit");
        assert_eq!(second.establish(), Err(Refusal::TooManyAssociations));
        drop(scanner);
        assert_eq!(second.establish(), Ok(()));
        drop(junk);
        drop(second);
        assert_eq!((s.established(), s.negotiating()), (0, 0));
    }

    #[test]
    fn negotiating_and_per_address_bounds() {
        let s = Slots::new(SlotLimits {
            associations: 8,
            negotiating: 2,
            per_address: 2,
        });
        let a = s.admit(ip(1)).expect("admit");
        let _b = s.admit(ip(1)).expect("admit");
        assert_eq!(s.admit(ip(1)).map(|_| ()), Err(Refusal::TooManyFromAddress));
        assert_eq!(s.admit(ip(2)).map(|_| ()), Err(Refusal::TooManyNegotiating));
        drop(a);
        let _c = s.admit(ip(2)).expect("a slot was released");
        assert_eq!(s.admit(ip(1)).map(|_| ()), Err(Refusal::TooManyNegotiating));
    }
}

//! Slowing down online password guessing and mass registration.
//!
//! Three failed sign-ins close a connection, but reconnecting is cheap:
//! before this module an attacker made about 1,700 guesses a second against
//! one account, and registered 690 accounts a second. Two defences:
//!
//! - **Password guessing.** Each source address (an IPv6 /64 counts as one)
//!   has a failure count. Past a few free failures (people mistype), every
//!   sign-in attempt from that address waits for its turn, one at a time,
//!   spaced by a delay that doubles with each failure up to
//!   [`MAX_ADDRESS_DELAY`]: one address gets a handful of guesses a minute
//!   however many connections it opens. A turn more than [`MAX_TURN_WAIT`]
//!   away is refused at once, so nobody can book an address's turns hours
//!   ahead. Each account has a failure count too; while it is high, every
//!   attempt on the account waits up to [`MAX_ACCOUNT_DELAY`] before it is
//!   checked, which slows guessing spread over many addresses. The owner
//!   waits that long at most, and a success clears the count: an attacker
//!   who fails on purpose cannot lock the real owner out, which a lockout
//!   after N failures would let anyone do to anyone.
//! - **Registration.** Each address holds a bucket of
//!   [`REGISTRATION_BURST`] registrations that refills at
//!   `--max-registrations-per-hour` (a class behind one NAT can all sign up
//!   at once; a script cannot make thousands).
//!
//! Counts are forgotten after [`FORGET_AFTER`] without failures, and each
//! table is bounded ([`MAX_TRACKED`]): when full, the stalest entries go.
//! What this does not stop: an attacker with many addresses (a botnet) gets
//! the per-account delay only, and one who shares an address with students
//! slows them down too. Production servers do the same (Prosody's
//! mod_limit_auth, ejabberd's mod_fail2ban) and add CAPTCHAs and
//! per-network rules.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed sign-ins an address may make before its attempts are spaced out:
/// enough for people who mistype, too few to guess with.
pub const FREE_FAILURES: u32 = 5;

/// The first delay past the free failures; it doubles with each failure.
pub const BASE_DELAY: Duration = Duration::from_millis(250);

/// The longest an address waits between two attempts: at most 12 guesses a
/// minute from one address, and a student who shares it still gets in.
pub const MAX_ADDRESS_DELAY: Duration = Duration::from_secs(5);

/// The longest an attempt on an account under attack waits before it is
/// checked.
pub const MAX_ACCOUNT_DELAY: Duration = Duration::from_secs(2);

/// How long a count is kept after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Addresses and accounts tracked at once, so the tables cannot be grown
/// without bound with made-up names.
pub const MAX_TRACKED: usize = 100_000;

/// Registrations an address may make at once before the hourly rate
/// applies: a classroom behind one NAT registers together.
pub const REGISTRATION_BURST: u32 = 100;

/// Registrations per address per hour after the burst (the default of
/// `--max-registrations-per-hour`; 0 turns the limit off, for benchmarks).
pub const DEFAULT_REGISTRATIONS_PER_HOUR: u32 = 100;

/// The longest an attempt waits for its address's turn; beyond it the
/// attempt is refused at once (`temporary-auth-failure`). Well under the 30 s
/// sign-in deadline, so a waiting client never times out instead.
pub const MAX_TURN_WAIT: Duration = Duration::from_secs(10);

/// What counts as one address: an IPv4 address, or an IPv6 /64. One IPv6
/// host usually holds a whole /64, 2^64 addresses: keyed by full address,
/// it could take a fresh one for every guess or registration.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    /// When the next attempt from this address may start.
    next_slot: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// The throttles of one server.
#[derive(Debug)]
pub struct Throttle {
    addresses: Mutex<HashMap<IpAddr, Failures>>,
    accounts: Mutex<HashMap<String, Failures>>,
    registrations: Mutex<HashMap<IpAddr, Bucket>>,
    registrations_per_hour: u32,
}

/// The delay after `count` failures, `free` of them without one.
fn delay(count: u32, free: u32, max: Duration) -> Duration {
    let over = count.saturating_sub(free);
    if over == 0 {
        return Duration::ZERO;
    }
    BASE_DELAY
        .saturating_mul(1u32 << (over - 1).min(16))
        .min(max)
}

/// Makes room in a table that is full: first the forgotten entries, then
/// (when everything is fresh) the older half.
fn prune<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    now: Instant,
    last: impl Fn(&V) -> Instant,
) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| now.duration_since(last(v)) < FORGET_AFTER);
    if map.len() >= MAX_TRACKED {
        let mut times: Vec<Instant> = map.values().map(&last).collect();
        let mid = times.len() / 2;
        let (_, cut, _) = times.select_nth_unstable(mid);
        let cut = *cut;
        map.retain(|_, v| last(v) > cut);
    }
}

impl Throttle {
    /// Throttles with the given registration rate (0: unlimited).
    pub fn new(registrations_per_hour: u32) -> Throttle {
        Throttle {
            addresses: Mutex::default(),
            accounts: Mutex::default(),
            registrations: Mutex::default(),
            registrations_per_hour,
        }
    }

    /// How long a sign-in attempt from `ip` must wait before it starts;
    /// reserves its turn, so parallel connections from one address queue
    /// up instead of guessing side by side. `None` when its turn is more
    /// than [`MAX_TURN_WAIT`] away: the attempt is refused at once, without
    /// taking a turn, so connections that queue up and vanish cannot push
    /// an address's turns hours ahead (and lock out everyone behind it).
    pub fn attempt_wait(&self, ip: IpAddr) -> Option<Duration> {
        let ip = address_key(ip);
        let now = Instant::now();
        let mut map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
        let Some(f) = map.get_mut(&ip) else {
            return Some(Duration::ZERO);
        };
        if now.duration_since(f.last) >= FORGET_AFTER {
            map.remove(&ip);
            return Some(Duration::ZERO);
        }
        let step = delay(f.count, FREE_FAILURES, MAX_ADDRESS_DELAY);
        if step.is_zero() {
            return Some(Duration::ZERO);
        }
        let start = f.next_slot.max(now);
        if start - now > MAX_TURN_WAIT {
            return None;
        }
        f.next_slot = start + step;
        Some(start - now)
    }

    /// How long to hold a sign-in to `account` before checking it, however
    /// it turns out: an account under attack answers slowly. Holding only
    /// failed answers let an attacker read "no answer yet" as a failure and
    /// move on; holding every answer costs the owner at most
    /// [`MAX_ACCOUNT_DELAY`], never a lockout.
    pub fn account_wait(&self, account: &str) -> Duration {
        let now = Instant::now();
        let map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(account) {
            Some(f) if now.duration_since(f.last) < FORGET_AFTER => {
                delay(f.count, FREE_FAILURES, MAX_ACCOUNT_DELAY)
            }
            _ => Duration::ZERO,
        }
    }

    /// Records a failed sign-in from `ip`, naming `account` if it got that
    /// far.
    pub fn failed(&self, ip: IpAddr, account: Option<&str>) {
        let ip = address_key(ip);
        let now = Instant::now();
        let bump = |f: &mut Failures| {
            if now.duration_since(f.last) >= FORGET_AFTER {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        let fresh = Failures {
            count: 0,
            last: now,
            next_slot: now,
        };
        {
            let mut map = self.addresses.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut map, now, |f| f.last);
            bump(map.entry(ip).or_insert(fresh));
        }
        if let Some(account) = account {
            let mut map = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
            prune(&mut map, now, |f| f.last);
            bump(map.entry(account.to_string()).or_insert(fresh));
        }
    }

    /// Records a successful sign-in: the account's count is cleared (the
    /// address's is not, or an attacker could clear its own by signing in
    /// to an account of its own between guesses).
    pub fn succeeded(&self, account: &str) {
        self.accounts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(account);
    }

    /// Takes one registration from `ip`'s bucket; `false` when it is empty.
    pub fn may_register(&self, ip: IpAddr) -> bool {
        if self.registrations_per_hour == 0 {
            return true;
        }
        let ip = address_key(ip);
        let now = Instant::now();
        let mut map = self.registrations.lock().unwrap_or_else(|p| p.into_inner());
        prune(&mut map, now, |b| b.refilled);
        let b = map.entry(ip).or_insert(Bucket {
            tokens: f64::from(REGISTRATION_BURST),
            refilled: now,
        });
        let per_second = f64::from(self.registrations_per_hour) / 3600.0;
        b.tokens = (b.tokens + now.duration_since(b.refilled).as_secs_f64() * per_second)
            .min(f64::from(REGISTRATION_BURST));
        b.refilled = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test(start_paused = true)]
    async fn an_address_that_keeps_failing_waits_longer_and_longer_in_turn() {
        let t = Throttle::new(0);
        let now = Some(Duration::ZERO);
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.attempt_wait(A), now);
            t.failed(A, Some("alice"));
        }
        assert_eq!(t.attempt_wait(A), now, "mistakes are free");
        t.failed(A, Some("alice"));
        // Two attempts in parallel: the second waits for the first's turn.
        assert_eq!(t.attempt_wait(A), now);
        assert_eq!(t.attempt_wait(A), Some(BASE_DELAY));
        for _ in 0..20 {
            t.failed(A, None);
        }
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(t.attempt_wait(A), now);
        assert_eq!(t.attempt_wait(A), Some(MAX_ADDRESS_DELAY));
        assert_eq!(t.attempt_wait(A), Some(2 * MAX_ADDRESS_DELAY));
        // Turns are never booked further ahead than MAX_TURN_WAIT: connections
        // that queue up and vanish cannot lock the address out for hours.
        assert_eq!(t.attempt_wait(A), None);
        assert_eq!(t.attempt_wait(A), None);
        tokio::time::advance(MAX_ADDRESS_DELAY).await;
        assert!(t.attempt_wait(A).is_some());
        // Another address is not slowed down; an IPv6 /64 is one address.
        assert_eq!(t.attempt_wait(B), now);
        let v6 =
            |last: u16| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 1, 2, 0, 0, 0, last));
        for i in 0..(FREE_FAILURES as u16 + 1) {
            t.failed(v6(i), None);
        }
        assert_eq!(t.attempt_wait(v6(999)), now);
        assert_eq!(t.attempt_wait(v6(1000)), Some(BASE_DELAY), "same /64");
        // Forgotten after a quiet while.
        tokio::time::advance(FORGET_AFTER * 2).await;
        assert_eq!(t.attempt_wait(A), now);
    }

    #[tokio::test(start_paused = true)]
    async fn an_account_under_attack_answers_slowly_and_success_clears_it() {
        let t = Throttle::new(0);
        assert_eq!(t.account_wait("victim"), Duration::ZERO);
        for _ in 0..30 {
            t.failed(B, Some("victim"));
        }
        assert_eq!(t.account_wait("victim"), MAX_ACCOUNT_DELAY);
        assert_eq!(t.account_wait("bystander"), Duration::ZERO);
        t.succeeded("victim");
        assert_eq!(t.account_wait("victim"), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn registrations_come_in_a_burst_then_at_the_hourly_rate() {
        let t = Throttle::new(3600);
        for _ in 0..REGISTRATION_BURST {
            assert!(t.may_register(A));
        }
        assert!(!t.may_register(A));
        assert!(t.may_register(B), "per address");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(t.may_register(A), "one more a second at 3600/hour");
        assert!(!t.may_register(A));
        assert!(Throttle::new(0).may_register(A), "0 is unlimited");
    }

    #[tokio::test(start_paused = true)]
    async fn the_tables_stay_bounded() {
        let t = Throttle::new(0);
        for i in 0..(MAX_TRACKED + 10) {
            t.failed(A, Some(&format!("name{i}")));
        }
        assert!(t.accounts.lock().unwrap().len() <= MAX_TRACKED);
    }
}

//! Names both sides of this chat agree on beyond the RFCs: the node, the
//! resource and the room-history length a client asks the server for.
//!
//! They live here, not in the server, so the client and the server read
//! them from the same place without the client importing server code.

/// The service-discovery node (XEP-0030) that lists the users online.
pub const ONLINE_NODE: &str = "online users";

/// The resource of the server's own domain that announcements go to
/// (`localhost/announce/online`, as in ejabberd and Prosody).
pub const ANNOUNCE_RESOURCE: &str = "announce/online";

/// Messages a room keeps and replays to whoever joins; a client asks for
/// this many (`<history maxstanzas>`, XEP-0045 7.2.13).
pub const MAX_ROOM_HISTORY: usize = 20;

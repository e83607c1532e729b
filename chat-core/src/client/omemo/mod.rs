//! The client's side of OMEMO (XEP-0384; the protocol is
//! `protocol::omemo`): where its state is kept between runs. In progress:
//! publishing the device list and bundle with PEP, encrypting to every
//! device of a contact, and the commands come next.

pub mod store;

//! The user directory on the client side: search (XEP-0055), profiles by
//! vCard (XEP-0054), who is online, and announcements.

use std::collections::BTreeMap;
use std::future::Future;

use protocol::stanza::IqType;
use protocol::{Element, Jid, ns};

use protocol::service::{ANNOUNCE_RESOURCE, ONLINE_NODE};

use super::api::Client;
use super::error::ClientError;
use crate::util::random_id;

/// One user of the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserEntry {
    /// Their bare JID.
    pub jid: Jid,
    /// Display name.
    pub name: Option<String>,
    /// Email.
    pub email: Option<String>,
}

/// Which field a search term is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchField {
    /// The user name or the display name (XEP-0055 `nick`).
    User,
    /// The email address.
    Email,
}

impl Client {
    fn domain_jid(&self, resource: Option<&str>) -> Result<Jid, ClientError> {
        let domain = self.jid.domain();
        let bad = |source| ClientError::BadJid {
            jid: match resource {
                Some(r) => format!("{domain}/{r}"),
                None => domain.to_string(),
            },
            source,
        };
        let d = Jid::parse(domain).map_err(bad)?;
        match resource {
            Some(r) => d.with_resource(r).map_err(bad),
            None => Ok(d),
        }
    }

    /// Searches the directory; `None` lists every user (up to the server's
    /// cap). Returns the users and how many matched in all.
    pub fn search(
        &self,
        term: Option<(SearchField, &str)>,
    ) -> impl Future<Output = Result<(Vec<UserEntry>, usize), ClientError>> + Send + 'static {
        let mut q = Element::new("query", ns::SEARCH);
        if let Some((field, text)) = term {
            let name = match field {
                SearchField::User => "nick",
                SearchField::Email => "email",
            };
            q = q.text_child(name, ns::SEARCH, text);
        }
        // Every page of the answer (XEP-0059): a server cuts a long list
        // into pages that each fit its stanza limit.
        let fut = self.domain_jid(None).map(|to| {
            self.iq_sender()
                .iq_pages(IqType::Set, Some(to), q, "searching the directory")
        });
        async move {
            let (items, total) = fut?.await?;
            let users: Vec<UserEntry> = items
                .iter()
                .filter(|i| i.is("item", ns::SEARCH))
                .filter_map(|i| {
                    Some(UserEntry {
                        jid: Jid::parse(i.get_attr("jid")?).ok()?,
                        name: i.child_text("first", ns::SEARCH).filter(|s| !s.is_empty()),
                        email: i.child_text("email", ns::SEARCH).filter(|s| !s.is_empty()),
                    })
                })
                .collect();
            let total = total.unwrap_or(users.len()).max(users.len());
            Ok((users, total))
        }
    }

    /// Users whose user name, display name or email contains `term`.
    pub fn find_users(
        &self,
        term: &str,
    ) -> impl Future<Output = Result<Vec<UserEntry>, ClientError>> + Send + 'static {
        let by_user = self.search(Some((SearchField::User, term)));
        let by_email = self.search(Some((SearchField::Email, term)));
        async move {
            let (a, b) = tokio::join!(by_user, by_email);
            let mut all: BTreeMap<Jid, UserEntry> = BTreeMap::new();
            for u in a?.0.into_iter().chain(b?.0) {
                all.insert(u.jid.clone(), u);
            }
            Ok(all.into_values().collect())
        }
    }

    /// The profile (display name, email) of `jid`, or our own.
    pub fn profile(
        &self,
        jid: Option<Jid>,
    ) -> impl Future<Output = Result<(Option<String>, Option<String>), ClientError>> + Send + 'static
    {
        let fut = self.iq(
            IqType::Get,
            jid,
            Element::new("vCard", ns::VCARD),
            "reading the profile",
        );
        async move {
            let iq = fut.await?;
            let v = iq
                .payload
                .unwrap_or_else(|| Element::new("vCard", ns::VCARD));
            let name = v.child_text("FN", ns::VCARD).filter(|s| !s.is_empty());
            let email = v
                .get_child("EMAIL", ns::VCARD)
                .and_then(|e| e.child_text("USERID", ns::VCARD))
                .filter(|s| !s.is_empty());
            Ok((name, email))
        }
    }

    /// Sets our display name and/or email; a field left `None` keeps its
    /// value (a vCard set replaces the whole card, so the current one is
    /// read first).
    pub fn set_profile(
        &self,
        name: Option<String>,
        email: Option<String>,
    ) -> impl Future<Output = Result<(), ClientError>> + Send + 'static {
        let current = self.profile(None);
        let this = self.iq_sender();
        async move {
            let (old_name, old_email) = current.await?;
            let name = name.or(old_name).unwrap_or_default();
            let email = email.or(old_email).unwrap_or_default();
            let mut v = Element::new("vCard", ns::VCARD);
            if !name.is_empty() {
                v = v.text_child("FN", ns::VCARD, name);
            }
            if !email.is_empty() {
                v = v.child(
                    Element::new("EMAIL", ns::VCARD)
                        .child(Element::new("INTERNET", ns::VCARD))
                        .text_child("USERID", ns::VCARD, email),
                );
            }
            this.iq(IqType::Set, None, v, "saving the profile").await?;
            Ok(())
        }
    }

    /// Users online now (bare JIDs, up to the server's cap).
    pub fn online_users(
        &self,
    ) -> impl Future<Output = Result<Vec<Jid>, ClientError>> + Send + 'static {
        let fut = self.domain_jid(None).map(|to| {
            self.iq_sender().iq_pages(
                IqType::Get,
                Some(to),
                Element::new("query", ns::DISCO_ITEMS).attr("node", ONLINE_NODE),
                "listing online users",
            )
        });
        async move {
            let (items, _) = fut?.await?;
            Ok(items
                .iter()
                .filter_map(|i| Jid::parse(i.get_attr("jid")?).ok())
                .collect())
        }
    }

    /// Sends an announcement to everyone online (admins only; others get a
    /// `forbidden` error back as [`ClientEvent::MessageError`](super::ClientEvent::MessageError)).
    pub fn broadcast(&self, body: &str) -> Result<String, ClientError> {
        let to = self.domain_jid(Some(ANNOUNCE_RESOURCE))?;
        let id = format!("b-{}", random_id(6));
        let m = Element::new("message", ns::CLIENT)
            .attr("to", to.to_string())
            .attr("id", id.clone())
            .text_child("body", ns::CLIENT, body);
        self.send(&m)?;
        Ok(id)
    }
}

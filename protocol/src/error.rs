//! Stream error conditions (RFC 6120 4.9.3) and stanza error conditions
//! (RFC 6120 8.3.3), with the elements that carry them.
//!
//! A stream error ends the whole connection; a stanza error answers one stanza
//! and the session goes on.

use crate::element::Element;
use crate::ns;

macro_rules! conditions {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name { $($(#[$vm])* $var,)* }
        impl $name {
            /// The element name of the condition.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s,)* }
            }
            /// Parses an element name; `None` for an unknown condition.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)* _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

conditions! {
    /// Why a stream is being closed (RFC 6120 4.9.3).
    StreamErrorCondition {
        /// The entity sent XML that cannot be processed.
        BadFormat = "bad-format",
        /// A new stream for this entity replaced this one.
        Conflict = "conflict",
        /// The peer did not do anything in time (for example authenticate).
        ConnectionTimeout = "connection-timeout",
        /// The `to` domain is not served here.
        HostUnknown = "host-unknown",
        /// The server had an internal problem.
        InternalServerError = "internal-server-error",
        /// Wrong stream or content namespace.
        InvalidNamespace = "invalid-namespace",
        /// Not authorized to do this before authentication.
        NotAuthorized = "not-authorized",
        /// The XML is not well-formed.
        NotWellFormed = "not-well-formed",
        /// A local policy was broken (size limits, rate limits).
        PolicyViolation = "policy-violation",
        /// Too many connections or a resource limit.
        ResourceConstraint = "resource-constraint",
        /// DTDs, comments, processing instructions or entities were sent.
        RestrictedXml = "restricted-xml",
        /// The server is shutting down.
        SystemShutdown = "system-shutdown",
        /// Something else, described in text.
        UndefinedCondition = "undefined-condition",
        /// The stream version is not supported.
        UnsupportedVersion = "unsupported-version",
        /// A stanza of an unsupported kind was sent.
        UnsupportedStanzaType = "unsupported-stanza-type",
    }
}

conditions! {
    /// Why a stanza failed (RFC 6120 8.3.3).
    StanzaErrorCondition {
        /// The request was malformed.
        BadRequest = "bad-request",
        /// A resource or name of that kind already exists.
        Conflict = "conflict",
        /// The feature is not implemented here.
        FeatureNotImplemented = "feature-not-implemented",
        /// The requester lacks permission.
        Forbidden = "forbidden",
        /// The server had an internal problem.
        InternalServerError = "internal-server-error",
        /// No such item.
        ItemNotFound = "item-not-found",
        /// The JID is malformed.
        JidMalformed = "jid-malformed",
        /// The request does not meet the criteria.
        NotAcceptable = "not-acceptable",
        /// Nobody may do this.
        NotAllowed = "not-allowed",
        /// Authentication is needed first.
        NotAuthorized = "not-authorized",
        /// A policy was broken.
        PolicyViolation = "policy-violation",
        /// The intended recipient is temporarily unavailable.
        RecipientUnavailable = "recipient-unavailable",
        /// The remote server is unreachable.
        RemoteServerNotFound = "remote-server-not-found",
        /// Registration is required first.
        RegistrationRequired = "registration-required",
        /// The server lacks resources for this.
        ResourceConstraint = "resource-constraint",
        /// No service handles this.
        ServiceUnavailable = "service-unavailable",
        /// Something else.
        UndefinedCondition = "undefined-condition",
        /// The request was not expected now.
        UnexpectedRequest = "unexpected-request",
    }
}

/// The `type` attribute of a stanza `<error/>`: what the requester should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry.
    Cancel,
    /// Proceed: the condition was only a warning.
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting.
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

impl StanzaErrorCondition {
    /// The error type RFC 6120 8.3.3 recommends for this condition.
    pub fn default_type(self) -> ErrorType {
        use StanzaErrorCondition::*;
        match self {
            BadRequest | JidMalformed | NotAcceptable | PolicyViolation => ErrorType::Modify,
            NotAuthorized | Forbidden | RegistrationRequired => ErrorType::Auth,
            RecipientUnavailable | ResourceConstraint | InternalServerError => ErrorType::Wait,
            _ => ErrorType::Cancel,
        }
    }

    /// The `<error/>` child of an error stanza, with an optional human text.
    pub fn to_element(self, text: Option<&str>) -> Element {
        let mut e = Element::new("error", ns::CLIENT)
            .attr("type", self.default_type().as_str())
            .child(Element::new(self.as_str(), ns::STANZA_ERRORS));
        if let Some(t) = text {
            e = e.child(
                Element::new("text", ns::STANZA_ERRORS)
                    .attr("xml:lang", "en")
                    .text(t),
            );
        }
        e
    }

    /// The condition inside an `<error/>` element, if it names a known one.
    pub fn from_error_element(error: &Element) -> Option<Self> {
        error
            .elements()
            .filter(|e| e.ns == ns::STANZA_ERRORS)
            .find_map(|e| Self::parse(&e.name))
    }
}

impl StreamErrorCondition {
    /// The `<stream:error/>` element, with an optional human text.
    pub fn to_element(self, text: Option<&str>) -> Element {
        let mut e =
            Element::new("error", ns::STREAM).child(Element::new(self.as_str(), ns::STREAM_ERRORS));
        if let Some(t) = text {
            e = e.child(
                Element::new("text", ns::STREAM_ERRORS)
                    .attr("xml:lang", "en")
                    .text(t),
            );
        }
        e
    }

    /// The condition and text of a received `<stream:error/>`.
    pub fn from_error_element(error: &Element) -> (Option<Self>, Option<String>) {
        let cond = error
            .elements()
            .filter(|e| e.ns == ns::STREAM_ERRORS && e.name != "text")
            .find_map(|e| Self::parse(&e.name));
        (cond, error.child_text("text", ns::STREAM_ERRORS))
    }
}

/// The human text of a stanza `<error/>`, if any.
pub fn error_text(error: &Element) -> Option<String> {
    error.child_text("text", ns::STANZA_ERRORS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_round_trip() {
        let e = StreamErrorCondition::PolicyViolation.to_element(Some("too big"));
        assert_eq!(
            e.to_xml(),
            "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>too big</text></stream:error>"
        );
        assert_eq!(
            StreamErrorCondition::from_error_element(&e),
            (
                Some(StreamErrorCondition::PolicyViolation),
                Some("too big".into())
            )
        );
    }

    #[test]
    fn stanza_error_has_the_recommended_type() {
        let e = StanzaErrorCondition::ServiceUnavailable.to_element(None);
        assert_eq!(e.get_attr("type"), Some("cancel"));
        assert_eq!(
            StanzaErrorCondition::from_error_element(&e),
            Some(StanzaErrorCondition::ServiceUnavailable)
        );
        assert_eq!(
            StanzaErrorCondition::Conflict.default_type(),
            ErrorType::Cancel
        );
        assert_eq!(
            StanzaErrorCondition::NotAuthorized.default_type(),
            ErrorType::Auth
        );
    }

    #[test]
    fn unknown_condition_names_are_none() {
        assert_eq!(StanzaErrorCondition::parse("no-such"), None);
        assert_eq!(
            StreamErrorCondition::parse("host-unknown"),
            Some(StreamErrorCondition::HostUnknown)
        );
    }
}

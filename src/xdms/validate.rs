//! Checks a tentative document before it is committed (RFC 4825 §8.2.5, OP-23, OP-35): schema
//! first, then the usage's uniqueness and other constraints. The first failure wins and nothing
//! is stored.

use crate::appusage::hooks::{ConstraintViolation, HookContext};
use crate::appusage::AppUsage;
use crate::xcap::error::{Conflict, ExistsField, XcapError};
use crate::xml::{self, Limits, XmlError};
use crate::xsd::{Validator, XsdError};
use std::sync::Arc;

pub struct CheckContext<'a> {
    pub public_root: &'a str,
    pub owner: Option<&'a str>,
    pub document_path: &'a str,
    pub allow_foreign_references: bool,
    pub oma_compliant: bool,
    pub limits: &'a Limits,
}

/// Validates `text` as the new content of a document of `usage`.
pub async fn check_document(
    usage: &AppUsage,
    validator: &Validator,
    text: Arc<str>,
    ctx: &CheckContext<'_>,
) -> Result<(), XcapError> {
    if usage.descriptor.schema.is_some() {
        match validator.validate(usage.auid(), text.clone()).await {
            Ok(()) => {}
            Err(XsdError::Invalid { message, line, .. }) => {
                let phrase = match line {
                    Some(l) => format!("line {l}: {message}"),
                    None => message,
                };
                return Err(XcapError::conflict_with(Conflict::SchemaValidation, phrase));
            }
            Err(e) => {
                return Err(XcapError::Internal(format!(
                    "schema validation failed: {e}"
                )))
            }
        }
    }
    if usage.hooks.is_empty() {
        return Ok(());
    }
    // Well-formedness and limits were checked on the way in; this parse feeds the hooks.
    let doc = xml::parse_document(&text, ctx.limits).map_err(xml_error)?;
    let hook_ctx = HookContext {
        xcap_root: ctx.public_root,
        auid: usage.auid(),
        xui: ctx.owner,
        document_path: ctx.document_path,
        allow_foreign_references: ctx.allow_foreign_references,
        oma_compliant: ctx.oma_compliant,
    };
    for (_, hook) in &usage.hooks {
        hook(&doc, &hook_ctx).map_err(violation)?;
    }
    Ok(())
}

/// Maps a hook's verdict to its 409 (OP-23b, OP-23c).
pub fn violation(v: ConstraintViolation) -> XcapError {
    match v {
        ConstraintViolation::Uniqueness(fields) => XcapError::conflict(Conflict::Uniqueness(
            fields
                .into_iter()
                .map(|f| ExistsField {
                    field: f.field,
                    alt_values: f.alt_values,
                })
                .collect(),
        )),
        ConstraintViolation::Constraint(phrase) => {
            XcapError::conflict_with(Conflict::Constraint, phrase)
        }
    }
}

/// Maps body-level XML failures to their 409s (ER-03..ER-06) or 413 for limits.
pub fn xml_error(e: XmlError) -> XcapError {
    match e {
        XmlError::NotWellFormed(msg) => XcapError::conflict_with(Conflict::NotWellFormed, msg),
        XmlError::Doctype => XcapError::conflict_with(
            Conflict::NotWellFormed,
            "document type declarations are not accepted",
        ),
        XmlError::NotUtf8 => XcapError::conflict(Conflict::NotUtf8),
        XmlError::NotXmlFrag => XcapError::conflict(Conflict::NotXmlFrag),
        XmlError::NotXmlAttValue => XcapError::conflict(Conflict::NotXmlAttValue),
        XmlError::TooDeep => {
            XcapError::conflict_with(Conflict::Constraint, "document nesting is too deep")
        }
        XmlError::TooManyNodes => XcapError::PayloadTooLarge,
        XmlError::CannotInsert => XcapError::conflict(Conflict::CannotInsert),
        XmlError::CannotDelete => XcapError::conflict(Conflict::CannotDelete),
        XmlError::NoMatch | XmlError::Ambiguous => {
            XcapError::NotFound("node selector selects no single node")
        }
        XmlError::NoParent { .. } => XcapError::conflict(Conflict::NoParent { ancestor: None }),
    }
}

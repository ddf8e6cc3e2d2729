//! Checks a tentative document before it is committed (RFC 4825 §8.2.5, OP-23, OP-35): schema
//! first, then the usage's uniqueness and other constraints. The first failure wins and nothing
//! is stored.

use crate::appusage::hooks::{ConstraintViolation, HookContext};
use crate::appusage::AppUsage;
use crate::xcap::error::{Conflict, ExistsField, XcapError};
use crate::xml::{ParsedDoc, XmlError};
use crate::xsd::{Validator, XsdError};
use std::sync::Arc;

pub struct CheckContext<'a> {
    pub public_root: &'a str,
    pub owner: Option<&'a str>,
    pub document_path: &'a str,
    pub allow_foreign_references: bool,
    pub oma_compliant: bool,
}

/// Validates a tentative document of `usage`. The schema runs on a validation worker while the
/// hooks run here on the already parsed tree; the schema verdict still wins (OP-23a first).
pub async fn check_document(
    usage: &AppUsage,
    validator: &Validator,
    parsed: &ParsedDoc,
    ctx: &CheckContext<'_>,
) -> Result<(), XcapError> {
    let (schema, hooks) = tokio::join!(
        check_schema(usage, validator, parsed.shared_text().clone()),
        async { check_hooks(usage, parsed, ctx) }
    );
    schema?;
    hooks
}

/// OP-23a: the schema of the usage (409 `<schema-validation-error>` with the first message).
pub async fn check_schema(
    usage: &AppUsage,
    validator: &Validator,
    text: Arc<str>,
) -> Result<(), XcapError> {
    if usage.descriptor.schema.is_none() {
        return Ok(());
    }
    match validator.validate(usage.auid(), text).await {
        Ok(()) => Ok(()),
        Err(XsdError::Invalid { message, line, .. }) => {
            let phrase = match line {
                Some(l) => format!("line {l}: {message}"),
                None => message,
            };
            Err(XcapError::conflict_with(Conflict::SchemaValidation, phrase))
        }
        Err(e) => Err(XcapError::Internal(format!(
            "schema validation failed: {e}"
        ))),
    }
}

/// OP-23b/c: the usage's uniqueness and other constraints, on the parsed tree.
pub fn check_hooks(
    usage: &AppUsage,
    parsed: &ParsedDoc,
    ctx: &CheckContext<'_>,
) -> Result<(), XcapError> {
    let hook_ctx = HookContext {
        xcap_root: ctx.public_root,
        auid: usage.auid(),
        xui: ctx.owner,
        document_path: ctx.document_path,
        allow_foreign_references: ctx.allow_foreign_references,
        oma_compliant: ctx.oma_compliant,
    };
    usage
        .hooks
        .iter()
        .try_for_each(|(_, hook)| hook(parsed.doc(), &hook_ctx))
        .map_err(violation)
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
        XmlError::TooManyAttributes(max) => XcapError::conflict_with(
            Conflict::Constraint,
            format!("an element has more than {max} attributes"),
        ),
        XmlError::CannotInsert => XcapError::conflict(Conflict::CannotInsert),
        XmlError::CannotDelete => XcapError::conflict(Conflict::CannotDelete),
        XmlError::NoMatch | XmlError::Ambiguous => {
            XcapError::NotFound("node selector selects no single node")
        }
        XmlError::NoParent { .. } => XcapError::conflict(Conflict::NoParent { ancestor: None }),
    }
}

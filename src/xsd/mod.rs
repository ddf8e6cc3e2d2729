//! XSD validation adapter (layer L1, design §2/§6): validates XCAP documents against the XML
//! schema of their application usage (RFC 4825 §8.2.5 "validation constraints", §15: a PUT
//! whose result does not validate fails with `<schema-validation-error>`).
//!
//! libxml2 objects are not `Send`, so each of a fixed number of worker threads compiles every
//! schema once and then serves jobs from a shared queue. Small documents are validated on the
//! calling thread instead, with schemas that thread compiled on first use: handing a job of
//! tens of microseconds to a worker cost two context switches, as much as the job. Schemas and everything they import
//! come only from the in-memory `SchemaFiles` (the `schemas/` folder): validation never
//! touches the disk or the network.

mod loader;
mod worker;

use std::collections::HashMap;
use std::sync::{mpsc, Arc, Mutex};

use worker::{Job, Reply, Setup, Task};

/// The whole `schemas/` folder: file name (no directories) -> file bytes.
#[derive(Debug, Clone, Default)]
pub struct SchemaFiles {
    pub files: HashMap<String, Arc<[u8]>>,
}

/// Documents up to this size are validated on the calling thread (a 100-entry resource list,
/// 8.6 KB, takes ~60 µs); larger ones on a worker, so a runtime thread is never held long.
pub const INLINE_MAX_BYTES: usize = 32 * 1024;

/// Handle to the validation workers; cheap to clone, usable from any thread or task.
#[derive(Clone)]
pub struct Validator {
    jobs: mpsc::Sender<Job>,
    /// Key (e.g. an AUID) -> index of its main schema in the workers' tables.
    keys: Arc<HashMap<String, usize>>,
    /// What a thread needs to compile schemas for inline validation.
    inline: Arc<worker::Inline>,
}

/// Errors of the XSD adapter.
#[derive(thiserror::Error, Debug)]
pub enum XsdError {
    /// A schema, or a schema it imports/includes, cannot be compiled (or is missing).
    #[error("cannot compile XML schema {file}: {message}")]
    Compile { file: String, message: String },
    /// No schema is registered under this key.
    #[error("no XML schema registered for {0}")]
    UnknownKey(String),
    /// The document is not well-formed or not valid against the schema.
    #[error("{}", describe_invalid(.message, *.line))]
    Invalid {
        /// The first error, short and without trailing newline.
        message: String,
        /// Line of the first error in the document, when libxml knows it.
        line: Option<u32>,
        /// Every error reported (capped), in document order.
        all: Vec<(Option<u32>, String)>,
    },
    /// The worker threads are gone (or could not be started).
    #[error("XML schema validation workers are gone")]
    WorkerGone,
    /// libxml handling panicked or failed internally; the worker keeps serving.
    #[error("XML schema validation failed internally")]
    Panicked,
}

fn describe_invalid(message: &str, line: Option<u32>) -> String {
    match line {
        Some(line) => format!("document is not valid (line {line}): {message}"),
        None => format!("document is not valid: {message}"),
    }
}

impl Validator {
    /// Compiles every main schema on each of `workers` dedicated threads (libxml types are
    /// not `Send`: compile once per thread, send jobs over a channel). Fails naming the file
    /// if any schema or import cannot be compiled. `mains`: (key, main file name).
    pub fn start(
        files: SchemaFiles,
        mains: Vec<(String, String)>,
        workers: usize,
    ) -> Result<Validator, XsdError> {
        if let Some(name) = files.files.keys().find(|n| n.contains(['/', '\\'])) {
            return Err(XsdError::Compile {
                file: name.clone(),
                message: "schema file names must not contain directories".into(),
            });
        }
        let mut keys = HashMap::with_capacity(mains.len());
        let mut main_files = Vec::with_capacity(mains.len());
        for (key, main) in mains {
            if !files.files.contains_key(&main) {
                return Err(XsdError::Compile {
                    file: main,
                    message: format!("main schema of {key} is not among the schema files"),
                });
            }
            if keys.insert(key.clone(), main_files.len()).is_some() {
                return Err(XsdError::Compile {
                    file: main,
                    message: format!("key {key} is registered twice"),
                });
            }
            main_files.push(main);
        }

        loader::init_process();
        let files: loader::FileMap = Arc::new(files.files);
        let main_files = Arc::new(main_files);
        let (jobs, queue) = mpsc::channel();
        let queue = Arc::new(Mutex::new(queue));
        let workers = workers.max(1);
        let (ready_tx, ready_rx) = mpsc::sync_channel(workers);
        for n in 0..workers {
            let setup = Setup {
                files: Arc::clone(&files),
                mains: Arc::clone(&main_files),
                jobs: Arc::clone(&queue),
                ready: ready_tx.clone(),
            };
            std::thread::Builder::new()
                .name(format!("xcapd-xsd-{n}"))
                .spawn(move || worker::run(setup))
                .map_err(|_| XsdError::WorkerGone)?;
        }
        drop(ready_tx);
        for _ in 0..workers {
            // A worker that died before reporting drops its sender: `recv` then fails.
            ready_rx.recv().map_err(|_| XsdError::WorkerGone)??;
        }
        Ok(Validator {
            jobs,
            keys: Arc::new(keys),
            inline: Arc::new(worker::Inline::new(files, main_files)),
        })
    }

    /// Validates `document` against the schema registered under `key`, without blocking the
    /// async runtime (the work runs on a worker thread).
    pub async fn validate(&self, key: &str, document: Arc<str>) -> Result<(), XsdError> {
        let key_index = self.key_index(key)?;
        if document.len() <= INLINE_MAX_BYTES {
            return self.inline.validate(key_index, &document);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(
            Task::Validate {
                key_index,
                document,
            },
            Reply::Async(tx),
        )?;
        rx.await.map_err(|_| XsdError::WorkerGone)?
    }

    /// Blocking variant of [`Validator::validate`], for the CLI (`xcapd validate`).
    pub fn validate_blocking(&self, key: &str, document: Arc<str>) -> Result<(), XsdError> {
        let key_index = self.key_index(key)?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(
            Task::Validate {
                key_index,
                document,
            },
            Reply::Blocking(tx),
        )?;
        rx.recv().map_err(|_| XsdError::WorkerGone)?
    }

    fn key_index(&self, key: &str) -> Result<usize, XsdError> {
        self.keys
            .get(key)
            .copied()
            .ok_or_else(|| XsdError::UnknownKey(key.to_owned()))
    }

    fn submit(&self, task: Task, reply: Reply) -> Result<(), XsdError> {
        self.jobs
            .send(Job { task, reply })
            .map_err(|_| XsdError::WorkerGone)
    }
}

#[cfg(test)]
mod tests {
    //! Tests cite RFC 4825 §8.2.5/§15 (schema validation of XCAP documents) and design §5/§6
    //! (schemas served from memory only; libxml confined to worker threads).

    use super::*;
    use std::path::PathBuf;

    const RL_NS: &str = "urn:ietf:params:xml:ns:resource-lists";

    /// A cut-down xml.xsd, with the W3C original's DOCTYPE so an external DTD reference
    /// in a schema is exercised too.
    const XML_XSD: &str = r#"<?xml version='1.0'?>
<!DOCTYPE xs:schema PUBLIC "-//W3C//DTD XMLSCHEMA 200102//EN" "XMLSchema.dtd" >
<xs:schema targetNamespace="http://www.w3.org/XML/1998/namespace"
           xmlns:xs="http://www.w3.org/2001/XMLSchema" xml:lang="en">
  <xs:attribute name="lang">
    <xs:simpleType>
      <xs:union memberTypes="xs:language">
        <xs:simpleType>
          <xs:restriction base="xs:string"><xs:enumeration value=""/></xs:restriction>
        </xs:simpleType>
      </xs:union>
    </xs:simpleType>
  </xs:attribute>
  <xs:attribute name="space">
    <xs:simpleType>
      <xs:restriction base="xs:NCName">
        <xs:enumeration value="default"/><xs:enumeration value="preserve"/>
      </xs:restriction>
    </xs:simpleType>
  </xs:attribute>
  <xs:attribute name="base" type="xs:anyURI"/>
  <xs:attribute name="id" type="xs:ID"/>
</xs:schema>
"#;

    /// A resource-lists-like schema (after RFC 4826 §3.2) importing xml.xsd at `location`.
    fn resource_lists_xsd(location: &str) -> String {
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<xs:schema targetNamespace="{RL_NS}"
    xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns="{RL_NS}"
    elementFormDefault="qualified" attributeFormDefault="unqualified">
  <xs:import namespace="http://www.w3.org/XML/1998/namespace" schemaLocation="{location}"/>
  <xs:complexType name="listType">
    <xs:sequence>
      <xs:element name="display-name" type="display-nameType" minOccurs="0"/>
      <xs:choice minOccurs="0" maxOccurs="unbounded">
        <xs:element name="list" type="listType"/>
        <xs:element name="entry" type="entryType"/>
      </xs:choice>
    </xs:sequence>
    <xs:attribute name="name" type="xs:string" use="optional"/>
  </xs:complexType>
  <xs:complexType name="entryType">
    <xs:sequence>
      <xs:element name="display-name" type="display-nameType" minOccurs="0"/>
    </xs:sequence>
    <xs:attribute name="uri" type="xs:anyURI" use="required"/>
  </xs:complexType>
  <xs:complexType name="display-nameType">
    <xs:simpleContent>
      <xs:extension base="xs:string">
        <xs:attribute ref="xml:lang"/>
      </xs:extension>
    </xs:simpleContent>
  </xs:complexType>
  <xs:element name="resource-lists">
    <xs:complexType>
      <xs:sequence minOccurs="0" maxOccurs="unbounded">
        <xs:element name="list" type="listType"/>
      </xs:sequence>
    </xs:complexType>
  </xs:element>
</xs:schema>
"#
        )
    }

    fn files(entries: &[(&str, &str)]) -> SchemaFiles {
        SchemaFiles {
            files: entries
                .iter()
                .map(|(n, b)| (n.to_string(), Arc::from(b.as_bytes())))
                .collect(),
        }
    }

    fn rl_validator(workers: usize) -> Validator {
        let rl = resource_lists_xsd("xml.xsd");
        Validator::start(
            files(&[("resource-lists.xsd", &rl), ("xml.xsd", XML_XSD)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            workers,
        )
        .expect("schemas compile")
    }

    fn doc(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    const VALID_RL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends">
    <display-name xml:lang="en">Friends</display-name>
    <entry uri="sip:bill@example.com"><display-name>Bill Doe</display-name></entry>
    <list name="close"><entry uri="sip:joe@example.com"/></list>
  </list>
</resource-lists>"#;

    /// Line 4 holds an element the schema does not allow.
    const INVALID_RL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<resource-lists xmlns="urn:ietf:params:xml:ns:resource-lists">
  <list name="friends">
    <buddy uri="sip:bill@example.com"/>
  </list>
</resource-lists>"#;

    /// (first message, first line, all errors) of an `XsdError::Invalid`.
    type InvalidParts = (String, Option<u32>, Vec<(Option<u32>, String)>);

    fn expect_invalid(r: Result<(), XsdError>) -> InvalidParts {
        match r {
            Err(XsdError::Invalid { message, line, all }) => (message, line, all),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn expect_compile(r: Result<Validator, XsdError>) -> (String, String) {
        match r {
            Err(XsdError::Compile { file, message }) => (file, message),
            Err(other) => panic!("expected Compile, got {other:?}"),
            Ok(_) => panic!("expected Compile, got a validator"),
        }
    }

    /// RFC 4825 §8.2.5, AU-04: a document valid against the AUID's schema is accepted.
    #[test]
    fn valid_document_passes() {
        let v = rl_validator(1);
        v.validate_blocking("resource-lists", doc(VALID_RL))
            .unwrap();
    }

    /// RFC 4825 §8.2.5/§11, ER-10 (schema-validation-error): an invalid document is refused,
    /// with the line of the first error and a short message without trailing newline.
    #[test]
    fn invalid_document_reports_line() {
        let v = rl_validator(1);
        let (message, line, all) =
            expect_invalid(v.validate_blocking("resource-lists", doc(INVALID_RL)));
        assert_eq!(line, Some(4), "{message}");
        assert!(message.contains("buddy"), "{message}");
        assert!(!message.ends_with('\n'));
        assert_eq!(all.first(), Some(&(line, message.clone())));
        let shown = XsdError::Invalid { message, line, all }.to_string();
        assert!(shown.contains("line 4"), "{shown}");
    }

    /// The imported xml.xsd is really used: xml:lang is checked against xs:language.
    #[test]
    fn imported_xml_xsd_is_enforced() {
        let v = rl_validator(1);
        let bad = VALID_RL.replace(r#"xml:lang="en""#, r#"xml:lang="not a language!""#);
        let (message, line, _) = expect_invalid(v.validate_blocking("resource-lists", doc(&bad)));
        assert_eq!(line, Some(4), "{message}");
        assert!(message.contains("lang"), "{message}");
    }

    /// A missing required attribute (entry/@uri) is a validation error.
    #[test]
    fn missing_required_attribute_is_invalid() {
        let v = rl_validator(1);
        let bad = VALID_RL.replace(r#"<entry uri="sip:joe@example.com"/>"#, "<entry/>");
        let (message, line, _) = expect_invalid(v.validate_blocking("resource-lists", doc(&bad)));
        assert_eq!(line, Some(6));
        assert!(message.contains("uri"), "{message}");
    }

    /// Malformed XML is refused (recovery off), with the line where parsing failed.
    #[test]
    fn malformed_document_is_invalid_not_repaired() {
        let v = rl_validator(1);
        let broken = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n<list>\n</resource-lists>";
        let (message, line, all) =
            expect_invalid(v.validate_blocking("resource-lists", doc(broken)));
        assert_eq!(line, Some(3), "{message}");
        assert!(!all.is_empty());
        // A prefix that is never declared: libxml builds a tree anyway, we must not accept it.
        let undeclared = "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\"><p:x/></resource-lists>";
        expect_invalid(v.validate_blocking("resource-lists", doc(undeclared)));
        // Empty input.
        expect_invalid(v.validate_blocking("resource-lists", doc("")));
    }

    /// Line numbers past 65535 are not clamped to 65535 (XML_PARSE_BIG_LINES). Parse errors
    /// are exact; for validation errors libxml 2.9 recovers a big line from a neighbouring
    /// text node, which may be one line further on.
    #[test]
    fn line_numbers_beyond_u16() {
        let v = rl_validator(1);
        let padding = "\n".repeat(70_000);
        let far = INVALID_RL.replace("<list name", &format!("{padding}<list name"));
        let (message, line, _) = expect_invalid(v.validate_blocking("resource-lists", doc(&far)));
        assert!(matches!(line, Some(70_004..=70_005)), "{line:?} {message}");
        let broken = format!("<resource-lists xmlns=\"{RL_NS}\">{padding}<list></resource-lists>");
        let (message, line, _) =
            expect_invalid(v.validate_blocking("resource-lists", doc(&broken)));
        assert_eq!(line, Some(70_001), "{message}");
    }

    #[test]
    fn unknown_key_is_reported() {
        let v = rl_validator(1);
        match v.validate_blocking("no-such-auid", doc(VALID_RL)) {
            Err(XsdError::UnknownKey(k)) => assert_eq!(k, "no-such-auid"),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt.block_on(v.validate("other", doc(VALID_RL)));
        assert!(matches!(r, Err(XsdError::UnknownKey(k)) if k == "other"));
    }

    /// OP-24, AU-06 (RFC 4825 §5.8): content from unknown namespaces is accepted where the
    /// schema has a lax wildcard, while unexpected content from the schema's own namespace
    /// is still refused.
    #[test]
    fn lax_wildcard_accepts_unknown_namespaces() {
        let schema = r###"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" elementFormDefault="qualified">
  <xs:element name="r"><xs:complexType><xs:sequence>
    <xs:element name="a" type="xs:string"/>
    <xs:any namespace="##other" processContents="lax" minOccurs="0" maxOccurs="unbounded"/>
  </xs:sequence><xs:anyAttribute namespace="##other" processContents="lax"/></xs:complexType></xs:element>
</xs:schema>"###;
        let v = Validator::start(
            files(&[("t.xsd", schema)]),
            vec![("t".into(), "t.xsd".into())],
            1,
        )
        .unwrap();
        v.validate_blocking(
            "t",
            doc(r#"<r xmlns="urn:t" xmlns:x="urn:unknown" x:flag="1"><a/><x:foo><x:any x:y="z"/></x:foo></r>"#),
        )
        .unwrap();
        let (message, _, _) =
            expect_invalid(v.validate_blocking("t", doc(r#"<r xmlns="urn:t"><a/><b/></r>"#)));
        assert!(message.contains("b'"), "{message}");
    }

    /// Several keys may share one main schema file; each key validates independently.
    #[test]
    fn several_keys_and_schemas() {
        let other = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" elementFormDefault="qualified">
  <xs:element name="r" type="xs:int"/></xs:schema>"#;
        let rl = resource_lists_xsd("xml.xsd");
        let v = Validator::start(
            files(&[
                ("resource-lists.xsd", &rl),
                ("xml.xsd", XML_XSD),
                ("t.xsd", other),
            ]),
            vec![
                ("resource-lists".into(), "resource-lists.xsd".into()),
                (
                    "org.openmobilealliance.group-usage-list".into(),
                    "resource-lists.xsd".into(),
                ),
                ("t".into(), "t.xsd".into()),
            ],
            2,
        )
        .unwrap();
        v.validate_blocking("resource-lists", doc(VALID_RL))
            .unwrap();
        v.validate_blocking("org.openmobilealliance.group-usage-list", doc(VALID_RL))
            .unwrap();
        v.validate_blocking("t", doc(r#"<r xmlns="urn:t">42</r>"#))
            .unwrap();
        expect_invalid(v.validate_blocking("t", doc(VALID_RL)));
        expect_invalid(v.validate_blocking("resource-lists", doc(r#"<r xmlns="urn:t">42</r>"#)));
    }

    /// Design §6: a schema with a syntax error stops `start`, naming the file.
    #[test]
    fn schema_syntax_error_fails_start_naming_file() {
        let broken = resource_lists_xsd("xml.xsd").replace("</xs:schema>", "</xs:schma>");
        let (file, message) = expect_compile(Validator::start(
            files(&[("resource-lists.xsd", &broken), ("xml.xsd", XML_XSD)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            2,
        ));
        assert_eq!(file, "resource-lists.xsd");
        assert!(message.contains("resource-lists.xsd:"), "{message}");
        let shown = XsdError::Compile { file, message }.to_string();
        assert!(shown.contains("resource-lists.xsd"), "{shown}");
    }

    /// An imported schema that does not compile is named as the culprit.
    #[test]
    fn broken_import_fails_start_naming_import() {
        let broken_xml = XML_XSD.replace(r#"type="xs:anyURI""#, r#"type="xs:noSuchType""#);
        let rl = resource_lists_xsd("xml.xsd");
        let (file, message) = expect_compile(Validator::start(
            files(&[("resource-lists.xsd", &rl), ("xml.xsd", &broken_xml)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            1,
        ));
        assert_eq!(file, "xml.xsd", "{message}");
        assert!(message.contains("noSuchType"), "{message}");
        assert!(
            message.contains("while compiling resource-lists.xsd"),
            "{message}"
        );
    }

    /// Design §5: `schemas/` must hold every imported schema; a missing one is fatal even
    /// though libxml itself would only warn and skip the import.
    #[test]
    fn missing_import_fails_start() {
        let rl = resource_lists_xsd("xml.xsd");
        let (file, message) = expect_compile(Validator::start(
            files(&[("resource-lists.xsd", &rl)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            1,
        ));
        assert_eq!(file, "resource-lists.xsd");
        assert!(message.contains("xml.xsd"), "{message}");
        // An import nothing refers to is still refused.
        let unused = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t">
  <xs:import namespace="urn:other" schemaLocation="other.xsd"/>
  <xs:element name="r" type="xs:string"/></xs:schema>"#;
        let (file, message) = expect_compile(Validator::start(
            files(&[("t.xsd", unused)]),
            vec![("t".into(), "t.xsd".into())],
            1,
        ));
        assert_eq!(file, "t.xsd");
        assert!(message.contains("other.xsd"), "{message}");
    }

    #[test]
    fn bad_registrations_fail_start() {
        let (file, _) = expect_compile(Validator::start(
            files(&[("xml.xsd", XML_XSD)]),
            vec![("k".into(), "absent.xsd".into())],
            1,
        ));
        assert_eq!(file, "absent.xsd");
        let (_, message) = expect_compile(Validator::start(
            files(&[("xml.xsd", XML_XSD)]),
            vec![
                ("k".into(), "xml.xsd".into()),
                ("k".into(), "xml.xsd".into()),
            ],
            1,
        ));
        assert!(message.contains("twice"), "{message}");
        let (file, _) = expect_compile(Validator::start(
            files(&[("dir/xml.xsd", XML_XSD)]),
            vec![],
            1,
        ));
        assert_eq!(file, "dir/xml.xsd");
    }

    /// A unique scratch directory under the system temp dir.
    fn temp_dir(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("xcapd-xsd-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn element_schema(ns: &str, element: &str) -> String {
        format!(
            r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="{ns}" elementFormDefault="qualified">
  <xs:element name="{element}" type="xs:string"/></xs:schema>"#
        )
    }

    fn importing_schema(location: &str) -> String {
        format!(
            r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:e="urn:evil"
    targetNamespace="urn:main" elementFormDefault="qualified">
  <xs:import namespace="urn:evil" schemaLocation="{location}"/>
  <xs:element name="main">
    <xs:complexType><xs:sequence><xs:any namespace="urn:evil" processContents="strict"/></xs:sequence></xs:complexType>
  </xs:element>
</xs:schema>"#
        )
    }

    /// Design §5/§6: imports are never read from disk. A schema on disk with distinctive
    /// content (element `diskOnly`) is imported by absolute path and by file: URL; it must
    /// either fail to compile (not in memory) or be served from the in-memory copy (whose
    /// element is `memoryOnly`), never from the disk.
    #[test]
    fn imports_never_read_from_disk() {
        let dir = temp_dir("disk");
        let on_disk = dir.join("evil.xsd");
        std::fs::write(&on_disk, element_schema("urn:evil", "diskOnly")).unwrap();
        let path = on_disk.to_str().unwrap().to_owned();
        for location in [path.clone(), format!("file://{path}")] {
            let main = importing_schema(&location);
            // Not in memory: the disk copy must not rescue the import.
            let (file, message) = expect_compile(Validator::start(
                files(&[("main.xsd", &main)]),
                vec![("m".into(), "main.xsd".into())],
                1,
            ));
            assert_eq!(file, "main.xsd");
            assert!(message.contains("evil.xsd"), "{message}");

            // In memory under the same bare name: the memory copy is what gets used.
            let memory = element_schema("urn:evil", "memoryOnly");
            let v = Validator::start(
                files(&[("main.xsd", &main), ("evil.xsd", &memory)]),
                vec![("m".into(), "main.xsd".into())],
                1,
            )
            .unwrap();
            v.validate_blocking(
                "m",
                doc(r#"<main xmlns="urn:main"><memoryOnly xmlns="urn:evil">x</memoryOnly></main>"#),
            )
            .unwrap();
            expect_invalid(v.validate_blocking(
                "m",
                doc(r#"<main xmlns="urn:main"><diskOnly xmlns="urn:evil">x</diskOnly></main>"#),
            ));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Design §5: the canonical network location of xml.xsd is served from memory (no
    /// network is reachable from tests, so success proves the memory copy was used), and
    /// without an in-memory copy the import fails instead of being fetched.
    #[test]
    fn network_import_served_from_memory_only() {
        let rl = resource_lists_xsd("http://www.w3.org/2001/xml.xsd");
        let v = Validator::start(
            files(&[("resource-lists.xsd", &rl), ("xml.xsd", XML_XSD)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            1,
        )
        .unwrap();
        v.validate_blocking("resource-lists", doc(VALID_RL))
            .unwrap();
        let bad = VALID_RL.replace(r#"xml:lang="en""#, r#"xml:lang="!!""#);
        expect_invalid(v.validate_blocking("resource-lists", doc(&bad)));

        let (file, message) = expect_compile(Validator::start(
            files(&[("resource-lists.xsd", &rl)]),
            vec![("resource-lists".into(), "resource-lists.xsd".into())],
            1,
        ));
        assert_eq!(file, "resource-lists.xsd");
        assert!(
            message.contains("http://www.w3.org/2001/xml.xsd"),
            "{message}"
        );
    }

    /// Design §6: documents never pull external entities or DTDs, even from a file whose
    /// name is also a schema file. The control document shows the schema would accept the
    /// disk content, so the test fails if the entity were ever expanded.
    #[test]
    fn documents_never_load_external_entities() {
        let dir = temp_dir("entity");
        let secret = dir.join("secret.txt");
        std::fs::write(&secret, "DISKSECRET").unwrap();
        let dtd = dir.join("evil.dtd");
        std::fs::write(&dtd, r#"<!ENTITY e "DISKSECRET">"#).unwrap();
        let schema = r#"<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:t" elementFormDefault="qualified">
  <xs:element name="r"><xs:simpleType><xs:restriction base="xs:string">
    <xs:enumeration value="DISKSECRET"/></xs:restriction></xs:simpleType></xs:element></xs:schema>"#;
        let v = Validator::start(
            files(&[
                ("t.xsd", schema),
                ("secret.txt", "DISKSECRET"),
                ("evil.dtd", r#"<!ENTITY e "DISKSECRET">"#),
            ]),
            vec![("t".into(), "t.xsd".into())],
            1,
        )
        .unwrap();
        v.validate_blocking("t", doc(r#"<r xmlns="urn:t">DISKSECRET</r>"#))
            .unwrap();

        let other = dir.join("other.xsd");
        std::fs::write(&other, element_schema("urn:x", "x")).unwrap();
        let secret = secret.to_str().unwrap();
        let dtd = dtd.to_str().unwrap();
        let other = other.to_str().unwrap();
        for attack in [
            format!(r#"<!DOCTYPE r [<!ENTITY e SYSTEM "{secret}">]><r xmlns="urn:t">&e;</r>"#),
            format!(
                r#"<!DOCTYPE r [<!ENTITY e SYSTEM "file://{secret}">]><r xmlns="urn:t">&e;</r>"#
            ),
            format!(r#"<!DOCTYPE r SYSTEM "{dtd}"><r xmlns="urn:t">&e;</r>"#),
            format!(r#"<!DOCTYPE r [<!ENTITY % p SYSTEM "{dtd}"> %p;]><r xmlns="urn:t">&e;</r>"#),
            // xsi:schemaLocation must not pull in a schema from disk either.
            format!(
                r#"<x xmlns="urn:x" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
                     xsi:schemaLocation="urn:x {other}">DISKSECRET</x>"#
            ),
        ] {
            expect_invalid(v.validate_blocking("t", doc(&attack)));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Design §6: a panicking job yields `Panicked` and the worker keeps serving.
    #[test]
    fn panicking_job_is_contained() {
        let v = rl_validator(1);
        let (tx, rx) = mpsc::sync_channel(1);
        v.submit(Task::Panic, Reply::Blocking(tx)).unwrap();
        assert!(matches!(rx.recv().unwrap(), Err(XsdError::Panicked)));
        v.validate_blocking("resource-lists", doc(VALID_RL))
            .unwrap();
        expect_invalid(v.validate_blocking("resource-lists", doc(INVALID_RL)));
    }

    /// Design §6: one validator shared by several OS threads and by tokio tasks at the same
    /// time; every answer matches its own document.
    #[test]
    fn concurrent_use_from_threads_and_tokio() {
        let v = rl_validator(3);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let v = v.clone();
                std::thread::spawn(move || {
                    for i in 0..40 {
                        if (i + t) % 2 == 0 {
                            v.validate_blocking("resource-lists", doc(VALID_RL))
                                .unwrap();
                        } else {
                            let (_, line, _) = expect_invalid(
                                v.validate_blocking("resource-lists", doc(INVALID_RL)),
                            );
                            assert_eq!(line, Some(4));
                        }
                    }
                })
            })
            .collect();

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for t in 0..40usize {
                let v = v.clone();
                tasks.spawn(async move {
                    // Distinct list names make each answer traceable to its own document.
                    let name = format!("list-{t}");
                    let valid = VALID_RL.replace("friends", &name);
                    v.validate("resource-lists", doc(&valid)).await.unwrap();
                    let invalid = INVALID_RL.replace("buddy", &format!("buddy{t}"));
                    let (message, _, _) =
                        expect_invalid(v.validate("resource-lists", doc(&invalid)).await);
                    assert!(message.contains(&format!("buddy{t}")), "{message}");
                });
            }
            while let Some(r) = tasks.join_next().await {
                r.unwrap();
            }
        });
        for t in threads {
            t.join().unwrap();
        }
    }

    /// Both paths of `validate`, the calling thread (up to INLINE_MAX_BYTES) and a worker
    /// (above), give the same verdicts and lines (RFC 4825 §8.2.5, ER-10).
    #[tokio::test]
    async fn inline_and_worker_paths_agree() {
        let v = rl_validator(1);
        let padding = format!("<!--{}-->\n", "x".repeat(INLINE_MAX_BYTES));
        for prefix in ["", padding.as_str()] {
            let valid = VALID_RL.replacen("\n", &format!("\n{prefix}"), 1);
            let invalid = INVALID_RL.replacen("\n", &format!("\n{prefix}"), 1);
            let big = !prefix.is_empty();
            assert_eq!(valid.len() > INLINE_MAX_BYTES, big);
            v.validate("resource-lists", doc(&valid)).await.unwrap();
            let (message, line, _) =
                expect_invalid(v.validate("resource-lists", doc(&invalid)).await);
            assert!(message.contains("buddy"), "{message}");
            assert_eq!(line, Some(if big { 5 } else { 4 }));
        }
    }

    /// `validate_blocking` must also work when called from inside an async context.
    #[tokio::test]
    async fn blocking_call_inside_runtime_does_not_panic() {
        let v = rl_validator(1);
        v.validate_blocking("resource-lists", doc(VALID_RL))
            .unwrap();
        v.validate("resource-lists", doc(VALID_RL)).await.unwrap();
    }

    /// Validator handles are Send + Sync + Clone.
    #[test]
    fn validator_is_send_sync_clone() {
        fn check<T: Send + Sync + Clone + 'static>() {}
        check::<Validator>();
    }

    /// Design §5: every schema shipped in `schemas/` compiles from memory with its imports.
    #[test]
    #[ignore = "needs schemas/ populated"]
    fn shipped_schemas_compile() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas");
        let mut set = SchemaFiles::default();
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "xsd") {
                let name = path.file_name().unwrap().to_str().unwrap().to_owned();
                set.files
                    .insert(name, Arc::from(std::fs::read(&path).unwrap()));
            }
        }
        assert!(!set.files.is_empty(), "no .xsd in {}", dir.display());
        let mains: Vec<(String, String)> =
            set.files.keys().map(|n| (n.clone(), n.clone())).collect();
        Validator::start(set, mains, 1).unwrap();
    }
}

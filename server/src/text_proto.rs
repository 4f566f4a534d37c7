//! TensorFlow Serving's config files are text-format protos. They are parsed by prost-reflect
//! over the descriptors `proto/` compiles, so every field and value is checked against the same
//! `.proto` definitions as the gRPC messages; an error names the file, line and column.

use std::path::{Path, PathBuf};

use miette::Diagnostic;
use prost_reflect::DynamicMessage;

/// A config file that cannot be read, parsed, or that says something invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax { path: PathBuf, line: usize, column: usize, message: String },
    /// Well-formed, but a value is not acceptable (the message names the field).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl ConfigFileError {
    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Self::Invalid { path: path.to_path_buf(), message: message.into() }
    }
}

/// Where `text` fails to parse as `message_name`: (line, column, message), 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(offset.min(text.len()))];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

/// Parses `text` as the text format of `message_name` (a message of [`proto::descriptor_pool`]).
pub fn parse<T: prost::Message + Default>(text: &str, message_name: &str) -> Result<T, SyntaxError> {
    let descriptor = proto::descriptor_pool()
        .get_message_by_name(message_name)
        .unwrap_or_else(|| panic!("{message_name} is compiled by proto/build.rs"));
    let message = DynamicMessage::parse_text_format(descriptor, text).map_err(|e| {
        let offset = e.labels().and_then(|mut labels| labels.next()).map_or(text.len(), |label| label.offset());
        let (line, column) = line_and_column(text, offset);
        let message = match e.help() {
            Some(help) => format!("{e} ({help})"),
            None => e.to_string(),
        };
        SyntaxError { line, column, message }
    })?;
    // The dynamic message was built from T's own descriptor, so its encoding always decodes.
    Ok(message.transcode_to::<T>().expect("a message transcodes to its own type"))
}

/// Reads `path` as the text format of `message_name`.
pub fn read<T: prost::Message + Default>(path: &Path, message_name: &str) -> Result<T, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read { path: path.to_path_buf(), source })?;
    parse(&text, message_name).map_err(|SyntaxError { line, column, message }| ConfigFileError::Syntax {
        path: path.to_path_buf(),
        line,
        column,
        message,
    })
}

#[cfg(test)]
mod tests {
    use proto::tensorflow::serving::SslConfig;

    use super::*;

    #[test]
    fn positions_are_lines_and_columns() {
        assert_eq!(line_and_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_and_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_and_column("é\né", 5), (2, 2));
        assert_eq!(line_and_column("ab", 99), (1, 3));
    }

    #[test]
    fn unknown_fields_and_bad_values_name_line_and_column() {
        let ok: SslConfig = parse("# comment\nserver_key: 'k' client_verify: true", "tensorflow.serving.SSLConfig").unwrap();
        assert_eq!((ok.server_key.as_str(), ok.client_verify), ("k", true));
        let e = parse::<SslConfig>("server_key: 'k'\n  client_verfy: true", "tensorflow.serving.SSLConfig").unwrap_err();
        assert_eq!((e.line, e.column), (2, 3), "{e:?}");
        assert!(e.message.contains("client_verfy"), "{e:?}");
        let e = parse::<SslConfig>("client_verify: maybe", "tensorflow.serving.SSLConfig").unwrap_err();
        assert_eq!((e.line, e.column), (1, 16), "{e:?}");
        let e = parse::<SslConfig>("server_key: 'k", "tensorflow.serving.SSLConfig").unwrap_err();
        assert_eq!(e.line, 1, "{e:?}");
        // PEM in an SSLConfig: `\n` escapes, one string per line (adjacent strings join), but
        // no raw line breaks inside a string, as in protobuf's own parser.
        let pem = parse::<SslConfig>("server_key: 'a\\n'\n  \"b\\n\"", "tensorflow.serving.SSLConfig").unwrap();
        assert_eq!(pem.server_key, "a\nb\n");
        let e = parse::<SslConfig>("server_key: 'a\nb'", "tensorflow.serving.SSLConfig").unwrap_err();
        assert_eq!((e.line, e.column, e.message.as_str()), (1, 15, "invalid string character"));
    }
}

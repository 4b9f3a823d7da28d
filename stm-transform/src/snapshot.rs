//! Readable rendering of expansions (for the snapshot files and the CLI's `--show`).

use proc_macro2::TokenStream;

/// Pretty-prints tokens that form a whole file (items); falls back to the raw token text if
/// they do not parse as one.
pub fn pretty(tokens: TokenStream) -> String {
    match syn::parse2::<syn::File>(tokens.clone()) {
        Ok(file) => prettyplease::unparse(&file),
        Err(_) => tokens.to_string(),
    }
}

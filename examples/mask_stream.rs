//! Shows the streaming masker as a library: a secret split across chunks,
//! in plain text and base64, is replaced, and a prompt with no newline goes
//! out at once (nothing is held that cannot be part of a secret).
//!
//! Run with: `cargo run --example mask_stream`

use shroud::mask::{MaskSet, MaskStyle, Masker};
use shroud::secret::SecretValue;

fn main() {
    let mut builder = MaskSet::builder(MaskStyle::Label);
    builder.add(
        "API_TOKEN",
        &SecretValue::from_slice(b"sk-live-4f9a8b7c6d5e"),
    );
    let set = builder.build();
    println!("{set:?}");

    let mut masker = Masker::new(set);
    let mut out = Vec::new();
    // The value arrives cut in three, as a child's writes can be.
    for chunk in [
        &b"token: sk-li"[..],
        b"ve-4f9a8",
        b"b7c6d5e\nas base64: c2stbGl2ZS00ZjlhOGI3YzZkNWU=\nEnter code: ",
    ] {
        out.clear();
        masker.push(chunk, &mut out);
        println!(
            "pushed {:>2} bytes, released {:?}",
            chunk.len(),
            String::from_utf8_lossy(&out)
        );
    }
    out.clear();
    masker.finish(&mut out);
    println!("at the end, released {:?}", String::from_utf8_lossy(&out));
}

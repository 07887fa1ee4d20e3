//! The users gRPC contract on the wire. orders (the consumer) sends `GetUserRequest.id` and
//! reads `User.name` and `User.email`; both sides compile `proto/`, so the contract is the
//! encoding itself: these bytes are what a deployed orders sends and understands. A renumbered,
//! retyped or removed field changes them and fails here; a new field does not (old readers skip
//! it), which is protobuf's own rule for compatible changes.

use contracts::grpc::users::{GetUserRequest, User};
use prost::Message;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
        .collect()
}

/// `GetUserRequest { id: "u-1" }`: field 1, a string.
const REQUEST: &str = "0a03752d31";
/// `User { id: "u-1", email: "a@b.c", name: "Ada", roles: ["customer"], created_at_ms: 1 }`:
/// fields 1 to 4 strings (4 repeated), field 5 a varint.
const USER: &str = "0a03752d311205614062 2e631a034164612208637573746f6d65722801";

fn user_bytes() -> String {
    USER.replace(' ', "")
}

#[test]
fn get_user_keeps_its_wire_shape() {
    let request = GetUserRequest { id: "u-1".into() };
    assert_eq!(hex(&request.encode_to_vec()), REQUEST);
    let user = User {
        id: "u-1".into(),
        email: "a@b.c".into(),
        name: "Ada".into(),
        roles: vec!["customer".into()],
        created_at_ms: 1,
    };
    assert_eq!(hex(&user.encode_to_vec()), user_bytes());
}

#[test]
fn what_orders_reads_survives_a_field_it_does_not_know() {
    // A newer users service adds field 6 (the string "x"); orders still reads name and email.
    let newer = format!("{}3201{}", user_bytes(), hex(b"x"));
    let user = User::decode(unhex(&newer).as_slice()).expect("decodes");
    assert_eq!((user.name.as_str(), user.email.as_str()), ("Ada", "a@b.c"));
}

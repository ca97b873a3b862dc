//! The `server_ops` seeds, written as scenarios: what `fuzz/corpus/server_ops/`
//! and `fuzz/regressions/server_ops/` hold, encoded the way `arbitrary`
//! decodes a [`Scenario`], so a change to the scenario's shape (a new
//! [`Op`]) re-encodes them instead of turning them into other scenarios.
//!
//! ```text
//! EBB_WRITE_SEEDS=1 cargo test -p ebb-testkit server_ops_seeds
//! ```
//! rewrites the files; without the variable the test checks that each file
//! decodes to its scenario.

use super::server_ops::{AnswerChoice, Op, Piece, Scenario};

/// `arbitrary` 1.x picks variant `(u32 * count) >> 32` of an enum: the
/// least tag that picks variant `v`.
fn tag(v: u32, count: u64) -> [u8; 4] {
    let t = (u64::from(v) << 32).div_ceil(count);
    (t as u32).to_le_bytes()
}

fn piece(out: &mut Vec<u8>, p: &Piece) {
    match p {
        Piece::Canned(w) => {
            out.extend(tag(0, 3));
            out.push(*w);
        }
        Piece::Slice { which, start, len } => {
            out.extend(tag(1, 3));
            out.extend([*which, *start, *len]);
        }
        Piece::Raw(bytes) => {
            out.extend(tag(2, 3));
            for &b in bytes {
                out.extend([1, b]);
            }
            out.push(0);
        }
    }
}

fn answer(out: &mut Vec<u8>, a: &AnswerChoice) {
    match a.bad {
        None => out.push(0),
        Some(b) => out.extend([1, b]),
    }
    out.extend(a.status.to_le_bytes());
    out.extend([a.extras, a.body_len, u8::from(a.big_body)]);
}

const OPS: u64 = 18;

/// The bytes that decode to `s`.
pub(super) fn encode(s: &Scenario) -> Vec<u8> {
    let mut out = vec![s.pre_stop, u8::from(s.stream_bodies)];
    for op in &s.ops {
        out.push(1);
        match op {
            Op::Accept => out.extend(tag(0, OPS)),
            Op::Bytes { conn, piece: p } => {
                out.extend(tag(1, OPS));
                out.push(*conn);
                piece(&mut out, p);
            }
            Op::Eof { conn } => {
                out.extend(tag(2, OPS));
                out.push(*conn);
            }
            Op::Reset { conn } => {
                out.extend(tag(3, OPS));
                out.push(*conn);
            }
            Op::Written { conn, n } => {
                out.extend(tag(4, OPS));
                out.push(*conn);
                out.extend(n.to_le_bytes());
            }
            Op::Respond { nth, answer: a } => {
                out.extend(tag(5, OPS));
                out.push(*nth);
                answer(&mut out, a);
            }
            Op::Terminate => out.extend(tag(6, OPS)),
            Op::BacklogEmpty => out.extend(tag(7, OPS)),
            Op::AdvanceTime { ms } => {
                out.extend(tag(8, OPS));
                out.extend(ms.to_le_bytes());
            }
            Op::Wake => out.extend(tag(9, OPS)),
            Op::Handoff => out.extend(tag(10, OPS)),
            Op::StreamStart {
                nth,
                length,
                status,
            } => {
                out.extend(tag(11, OPS));
                out.push(*nth);
                match length {
                    None => out.push(0),
                    Some(n) => out.extend([1, *n]),
                }
                out.push(*status);
            }
            Op::StreamData { nth, len } => {
                out.extend(tag(12, OPS));
                out.extend([*nth, *len]);
            }
            Op::StreamEnd { nth, trailer } => {
                out.extend(tag(13, OPS));
                out.extend([*nth, *trailer]);
            }
            Op::BodyWanted { nth } => {
                out.extend(tag(14, OPS));
                out.push(*nth);
            }
            Op::BodyConsumed { nth, n } => {
                out.extend(tag(15, OPS));
                out.push(*nth);
                out.extend(n.to_le_bytes());
            }
            Op::Upgrade { nth } => {
                out.extend(tag(16, OPS));
                out.push(*nth);
            }
            Op::UpgradedClose { conn } => {
                out.extend(tag(17, OPS));
                out.push(*conn);
            }
        }
    }
    out
}

const OK: AnswerChoice = AnswerChoice {
    bad: None,
    status: 0,
    extras: 0,
    body_len: 5,
    big_body: false,
};

fn get(conn: u8) -> Op {
    Op::Bytes {
        conn,
        piece: Piece::Canned(0),
    }
}

fn serving(ops: Vec<Op>) -> Scenario {
    Scenario {
        pre_stop: 0,
        stream_bodies: false,
        ops,
    }
}

fn streaming_bodies(ops: Vec<Op>) -> Scenario {
    Scenario {
        pre_stop: 0,
        stream_bodies: true,
        ops,
    }
}

/// Streams the answer to the first waiting request.
fn stream(length: Option<u8>, status: u8) -> Op {
    Op::StreamStart {
        nth: 0,
        length,
        status,
    }
}

/// `len` bytes to the last stream started.
fn data(len: u8) -> Op {
    Op::StreamData { nth: 255, len }
}

/// Ends the last stream started.
fn end(trailer: u8) -> Op {
    Op::StreamEnd { nth: 255, trailer }
}

/// `len` bytes of anything.
fn raw(conn: u8, len: usize) -> Op {
    Op::Bytes {
        conn,
        piece: Piece::Raw(vec![b'x'; len]),
    }
}

fn canned(conn: u8, which: u8) -> Op {
    Op::Bytes {
        conn,
        piece: Piece::Canned(which),
    }
}

fn respond() -> Op {
    Op::Respond { nth: 0, answer: OK }
}

fn write(conn: u8) -> Op {
    Op::Written { conn, n: 65535 }
}

/// Every seed: its file under `fuzz/`, and its scenario.
fn seeds() -> Vec<(&'static str, Scenario)> {
    vec![
        (
            "corpus/bad-request",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(9),
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        (
            "corpus/connection-close",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(1),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Wake,
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        (
            "corpus/drain-deadline",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Canned(11),
                    },
                    Op::Terminate,
                    Op::BacklogEmpty,
                    Op::AdvanceTime { ms: 30000 },
                    Op::AdvanceTime { ms: 1000 },
                ],
            },
        ),
        (
            "corpus/drain-graceful",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Terminate,
                    Op::Accept,
                    Op::Bytes {
                        conn: 2,
                        piece: Piece::Canned(0),
                    },
                    Op::BacklogEmpty,
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 2, n: 65535 },
                    Op::Wake,
                    Op::Wake,
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/drain-idle-close",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::AdvanceTime { ms: 1000 },
                    Op::Terminate,
                    Op::BacklogEmpty,
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        (
            "corpus/eof-while-dispatched",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(2),
                    },
                    Op::Eof { conn: 0 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Terminate,
                    Op::BacklogEmpty,
                ],
            },
        ),
        (
            "corpus/expect-continue",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(7),
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(8),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 1,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                ],
            },
        ),
        (
            "corpus/http10",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(5),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(6),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                ],
            },
        ),
        (
            "corpus/invalid-answers",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: Some(0),
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: Some(4),
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: Some(5),
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                ],
            },
        ),
        (
            "corpus/keepalive-two-requests",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(2),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 1,
                            extras: 3,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        (
            "corpus/linger-overflow",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(9),
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::AdvanceTime { ms: 2500 },
                ],
            },
        ),
        (
            "corpus/pipeline-backpressure",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(2),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(2),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                ],
            },
        ),
        (
            "corpus/pipelined-partial-writes",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(4),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 40,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 10 },
                    Op::Written { conn: 0, n: 7 },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 9,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: true,
                        },
                    },
                    Op::Written { conn: 0, n: 5000 },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Wake,
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/prestop",
            Scenario {
                pre_stop: 5,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Terminate,
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::AdvanceTime { ms: 600 },
                    Op::BacklogEmpty,
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 1, n: 65535 },
                    Op::Eof { conn: 1 },
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/raw-garbage",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Raw(vec![0, 1, 71, 69, 84]),
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/reset-mid-request",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Reset { conn: 0 },
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Canned(2),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Reset { conn: 1 },
                    Op::Accept,
                    Op::Bytes {
                        conn: 2,
                        piece: Piece::Canned(11),
                    },
                    Op::Reset { conn: 2 },
                ],
            },
        ),
        (
            "corpus/second-terminate",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Canned(2),
                    },
                    Op::Respond {
                        nth: 1,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Terminate,
                    Op::Terminate,
                ],
            },
        ),
        (
            "corpus/split-head",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Slice {
                            which: 2,
                            start: 0,
                            len: 20,
                        },
                    },
                    Op::AdvanceTime { ms: 100 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Slice {
                            which: 2,
                            start: 20,
                            len: 40,
                        },
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Slice {
                            which: 2,
                            start: 60,
                            len: 100,
                        },
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                ],
            },
        ),
        (
            "corpus/stale-ids",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 65535 },
                    Op::Eof { conn: 0 },
                    Op::Accept,
                    Op::Reset { conn: 1 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Eof { conn: 1 },
                    Op::Written { conn: 0, n: 5 },
                    Op::Respond {
                        nth: 3,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                ],
            },
        ),
        (
            "corpus/timeouts",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(11),
                    },
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Slice {
                            which: 2,
                            start: 0,
                            len: 60,
                        },
                    },
                    Op::Accept,
                    Op::Wake,
                    Op::Written { conn: 0, n: 65535 },
                    Op::Wake,
                    Op::Written { conn: 1, n: 65535 },
                    Op::Wake,
                    Op::Wake,
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/write-stall",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: true,
                        },
                    },
                    Op::Written { conn: 0, n: 100 },
                    Op::AdvanceTime { ms: 31000 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                ],
            },
        ),
        (
            "regressions/close-without-linger-with-unread-input",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(162),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 255 },
                ],
            },
        ),
        (
            "regressions/deadline-cuts-waiting-and-stalled",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Accept,
                    Op::Bytes {
                        conn: 1,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 1,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: true,
                        },
                    },
                    Op::Written { conn: 1, n: 100 },
                    Op::Terminate,
                    Op::BacklogEmpty,
                    Op::AdvanceTime { ms: 29000 },
                    Op::AdvanceTime { ms: 1000 },
                    Op::AdvanceTime { ms: 1000 },
                ],
            },
        ),
        (
            "regressions/http10-close-with-pipelined-input-lingers",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(162),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(3),
                    },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(0),
                    },
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                    Op::Written { conn: 0, n: 255 },
                ],
            },
        ),
        (
            "regressions/prestop-second-terminate",
            Scenario {
                pre_stop: 3,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Canned(7),
                    },
                    Op::Terminate,
                    Op::Accept,
                    Op::Terminate,
                    Op::Respond {
                        nth: 0,
                        answer: AnswerChoice {
                            bad: None,
                            status: 0,
                            extras: 0,
                            body_len: 5,
                            big_body: false,
                        },
                    },
                ],
            },
        ),
        // The drain's rules, one scenario each (S7, S9, hand-off).
        (
            "corpus/drain-pipelined-before-terminate",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    get(0),
                    Op::Terminate,
                    Op::BacklogEmpty,
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    Op::Wake,
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        // Requests pipelined behind a slow answer until reading paused
        // (`max_pipelined_bytes` is 64: the fourth is read, the fifth and
        // sixth wait unread in the socket) and then the stop: all six were
        // sent before the drain and are owed (S7), the unread ones counted
        // through `CountUnread`.
        (
            "corpus/drain-owes-pipelined-requests-unread-in-the-socket",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    get(0),
                    get(0),
                    get(0),
                    get(0),
                    get(0),
                    Op::Terminate,
                    Op::BacklogEmpty,
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    respond(),
                    write(0),
                    Op::Wake,
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        (
            "corpus/drain-idle-and-silent-timing",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    respond(),
                    write(0),
                    Op::Accept,
                    Op::Terminate,
                    Op::BacklogEmpty,
                    Op::AdvanceTime { ms: 200 },
                    Op::Wake,
                    Op::Wake,
                    Op::Eof { conn: 0 },
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/second-terminate-while-draining",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    Op::Accept,
                    Op::Terminate,
                    Op::Accept,
                    Op::BacklogEmpty,
                    Op::Terminate,
                ],
            },
        ),
        (
            "corpus/handoff-while-serving",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    Op::Accept,
                    Op::Handoff,
                    respond(),
                    write(0),
                    Op::Wake,
                    Op::Eof { conn: 0 },
                    Op::Wake,
                ],
            },
        ),
        (
            "corpus/handoff-in-prestop",
            Scenario {
                pre_stop: 5,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    get(0),
                    get(0),
                    Op::Terminate,
                    Op::Accept,
                    respond(),
                    write(0),
                    Op::Handoff,
                    Op::Wake,
                    Op::Wake,
                ],
            },
        ),
        // Streamed responses (one rule each).
        (
            "corpus/stream-chunked-keeps-connection",
            serving(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                data(10),
                write(0),
                data(200),
                write(0),
                end(1),
                write(0),
                get(0),
                respond(),
                write(0),
                Op::Eof { conn: 0 },
                Op::Wake,
            ]),
        ),
        (
            "corpus/stream-known-length-exact",
            serving(vec![
                Op::Accept,
                get(0),
                stream(Some(20), 2),
                data(20),
                write(0),
                end(0),
                write(0),
                Op::Eof { conn: 0 },
            ]),
        ),
        (
            "corpus/stream-overshoots-declared-length",
            serving(vec![
                Op::Accept,
                get(0),
                get(0),
                stream(Some(5), 0),
                data(3),
                data(3),
                data(1),
                Op::Wake,
            ]),
        ),
        (
            "corpus/stream-ends-short",
            serving(vec![
                Op::Accept,
                get(0),
                stream(Some(50), 0),
                data(10),
                write(0),
                end(0),
                end(0),
            ]),
        ),
        (
            "corpus/stream-http10-ended-by-close",
            serving(vec![
                Op::Accept,
                canned(0, 6),
                stream(None, 0),
                data(30),
                write(0),
                end(0),
                write(0),
                Op::Eof { conn: 0 },
                Op::Wake,
            ]),
        ),
        (
            "corpus/stream-back-pressure",
            serving(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                data(255),
                data(255),
                Op::Written { conn: 0, n: 100 },
                write(0),
                data(255),
                write(0),
                end(2),
                end(0),
                write(0),
            ]),
        ),
        (
            "corpus/stream-bodiless-head-204-304",
            serving(vec![
                Op::Accept,
                canned(0, 4),
                stream(Some(9), 0),
                data(4),
                end(0),
                get(0),
                stream(None, 3),
                data(4),
                end(2),
                get(0),
                stream(Some(3), 4),
                end(0),
                write(0),
            ]),
        ),
        (
            "corpus/stream-drain-waits-for-it",
            serving(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                Op::Terminate,
                Op::BacklogEmpty,
                Op::AdvanceTime { ms: 5000 },
                data(40),
                write(0),
                end(0),
                write(0),
                Op::Eof { conn: 0 },
            ]),
        ),
        (
            "corpus/stream-cut-by-deadline",
            serving(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                data(4),
                write(0),
                Op::Accept,
                canned(1, 5),
                stream(Some(100), 0),
                data(4),
                write(1),
                Op::Terminate,
                Op::BacklogEmpty,
                Op::Wake,
                Op::Wake,
                data(4),
            ]),
        ),
        (
            "corpus/stream-begun-in-drain",
            serving(vec![
                Op::Accept,
                get(0),
                Op::Terminate,
                Op::BacklogEmpty,
                stream(None, 0),
                data(8),
                write(0),
                end(0),
                write(0),
                Op::Eof { conn: 0 },
                Op::Wake,
            ]),
        ),
        (
            "corpus/stream-client-resets",
            serving(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                data(8),
                Op::Reset { conn: 0 },
                data(8),
                end(0),
            ]),
        ),
        // Streamed request bodies.
        (
            "corpus/upload-read-in-pieces",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 14),
                raw(0, 100),
                Op::BodyConsumed { nth: 0, n: 60 },
                raw(0, 200),
                Op::BodyConsumed { nth: 0, n: 300 },
                Op::BodyConsumed { nth: 0, n: 300 },
                respond(),
                write(0),
                get(0),
                respond(),
                write(0),
            ]),
        ),
        (
            "corpus/upload-continue-when-wanted",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 7),
                write(0),
                Op::BodyWanted { nth: 0 },
                Op::BodyWanted { nth: 0 },
                write(0),
                canned(0, 8),
                Op::BodyConsumed { nth: 0, n: 3 },
                stream(None, 0),
                end(0),
                write(0),
            ]),
        ),
        (
            "corpus/upload-answered-unread",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 14),
                raw(0, 50),
                get(0),
                respond(),
                write(0),
                Op::Eof { conn: 0 },
                Op::Wake,
            ]),
        ),
        (
            "corpus/upload-client-leaves-mid-body",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 14),
                raw(0, 10),
                Op::Eof { conn: 0 },
                respond(),
            ]),
        ),
        (
            "corpus/upload-cut-by-deadline",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 14),
                Op::Terminate,
                Op::BacklogEmpty,
                raw(0, 20),
                Op::BodyConsumed { nth: 0, n: 20 },
                Op::AdvanceTime { ms: 30000 },
            ]),
        ),
        (
            "corpus/upload-too-slow-is-taken-back",
            streaming_bodies(vec![
                Op::Accept,
                canned(0, 14),
                raw(0, 10),
                Op::AdvanceTime { ms: 45000 },
                stream(None, 0),
                write(0),
                Op::Eof { conn: 0 },
                Op::Wake,
            ]),
        ),
        // Upgrades.
        (
            "corpus/upgrade-then-app-closes",
            serving(vec![
                Op::Accept,
                canned(0, 12),
                raw(0, 5),
                Op::Upgrade { nth: 0 },
                write(0),
                raw(0, 7),
                write(0),
                Op::Eof { conn: 0 },
                Op::UpgradedClose { conn: 0 },
                Op::UpgradedClose { conn: 0 },
            ]),
        ),
        (
            "corpus/upgrade-told-to-stop-then-cut",
            serving(vec![
                Op::Accept,
                canned(0, 12),
                Op::Upgrade { nth: 0 },
                write(0),
                Op::Accept,
                canned(1, 12),
                Op::Upgrade { nth: 0 },
                Op::Terminate,
                write(1),
                Op::BacklogEmpty,
                Op::Wake,
                Op::Wake,
            ]),
        ),
        (
            "corpus/upgrade-closed-in-drain",
            serving(vec![
                Op::Accept,
                canned(0, 12),
                Op::Upgrade { nth: 0 },
                write(0),
                Op::Terminate,
                Op::BacklogEmpty,
                Op::Reset { conn: 0 },
            ]),
        ),
        (
            "corpus/upgrade-not-asked-is-500",
            serving(vec![
                Op::Accept,
                get(0),
                Op::Upgrade { nth: 0 },
                write(0),
                canned(0, 13),
                Op::Upgrade { nth: 0 },
                write(0),
                Op::UpgradedClose { conn: 0 },
                Op::Wake,
            ]),
        ),
        (
            "corpus/upgrade-in-prestop-then-second-terminate",
            Scenario {
                pre_stop: 5,
                stream_bodies: true,
                ops: vec![
                    Op::Accept,
                    canned(0, 12),
                    Op::Terminate,
                    Op::Upgrade { nth: 0 },
                    write(0),
                    Op::Terminate,
                ],
            },
        ),
        // Crashes the fuzzer found, rewritten as scenarios (`Canned`
        // indices as they were when found).
        (
            "regressions/crash2",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    Op::Terminate,
                    Op::Bytes {
                        conn: 45,
                        piece: Piece::Canned(7),
                    },
                    Op::Bytes {
                        conn: 31,
                        piece: Piece::Canned(1),
                    },
                    Op::Handoff,
                    Op::Terminate,
                ],
            },
        ),
        (
            "regressions/dropped-request",
            Scenario {
                pre_stop: 0,
                stream_bodies: false,
                ops: vec![
                    Op::Accept,
                    canned(31, 7),
                    canned(31, 7),
                    canned(31, 6),
                    canned(31, 0),
                    canned(31, 7),
                    canned(31, 7),
                    Op::Bytes {
                        conn: 31,
                        piece: Piece::Slice {
                            which: 0,
                            start: 100,
                            len: 0,
                        },
                    },
                    Op::AdvanceTime { ms: 31000 },
                    Op::Bytes {
                        conn: 0,
                        piece: Piece::Slice {
                            which: 9,
                            start: 153,
                            len: 153,
                        },
                    },
                    Op::Eof { conn: 0 },
                ],
            },
        ),
        // Two streams ended after they were written whole: each connection's
        // keep-alive wait starts at its end (the idle list stayed in order).
        (
            "regressions/streams-ended-after-written",
            serving(vec![
                Op::Accept,
                get(0),
                Op::Accept,
                get(1),
                stream(None, 3),
                stream(None, 3),
                write(0),
                write(1),
                Op::AdvanceTime { ms: 412 },
                Op::StreamEnd { nth: 1, trailer: 0 },
                Op::StreamEnd { nth: 0, trailer: 0 },
            ]),
        ),
        // A stream broken short of its length ends its request, failed,
        // and its connection once written: a forced exit later cuts
        // nothing more.
        (
            "regressions/broken-stream-then-forced-exit",
            serving(vec![
                Op::Accept,
                get(0),
                stream(Some(50), 0),
                data(10),
                write(0),
                end(0),
                Op::Terminate,
                Op::Terminate,
            ]),
        ),
        // A stream broken behind a response still queued: that response
        // is written whole before the connection ends.
        (
            "regressions/broken-stream-behind-a-queued-response",
            serving(vec![
                Op::Accept,
                get(0),
                get(0),
                respond(),
                stream(Some(4), 0),
                data(10),
                write(0),
            ]),
        ),
        // A FIN during a streamed upload: the last chunk of the response
        // before it is still written.
        (
            "regressions/fin-mid-upload-keeps-the-response-before",
            streaming_bodies(vec![
                Op::Accept,
                get(0),
                stream(None, 0),
                data(10),
                write(0),
                end(0),
                canned(0, 14),
                Op::Eof { conn: 0 },
            ]),
        ),
    ]
}

#[test]
fn server_ops_seeds() {
    use arbitrary::{Arbitrary, Unstructured};
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz");
    let write = std::env::var_os("EBB_WRITE_SEEDS").is_some();
    for (name, scenario) in seeds() {
        let bytes = encode(&scenario);
        let decoded = Scenario::arbitrary_take_rest(Unstructured::new(&bytes)).unwrap();
        assert_eq!(format!("{decoded:?}"), format!("{scenario:?}"), "{name}");
        let (dir, file) = name.split_once('/').expect("dir/file");
        let path = format!("{root}/{dir}/server_ops/{file}");
        if write {
            std::fs::write(&path, &bytes).unwrap();
        } else {
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert_eq!(
                on_disk, bytes,
                "{path} is stale: EBB_WRITE_SEEDS=1 rewrites it"
            );
        }
        super::server_ops(&bytes);
    }
}

/// Prints the scenario a file decodes to, then runs it (with
/// `EBB_FUZZ_TRACE=1`, printing each op and the events it caused):
/// `EBB_SHOW=path cargo test -p ebb-testkit show_scenario -- --nocapture`.
#[test]
fn show_scenario() {
    use arbitrary::{Arbitrary, Unstructured};
    if let Some(path) = std::env::var_os("EBB_SHOW") {
        let data = std::fs::read(path).expect("a readable file");
        let s = Scenario::arbitrary_take_rest(Unstructured::new(&data));
        println!("{s:#?}");
        super::server_ops(&data);
    }
}

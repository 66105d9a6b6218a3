//! ChatML prompt template (SmolLM2-Instruct):
//! `<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n`.

use alloc::string::String;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

pub struct Message<'a> {
    pub role: Role,
    pub content: &'a str,
}

/// The end-of-turn marker; generation with a ChatML prompt stops on this token.
pub const IM_END: &str = "<|im_end|>";

/// Renders a conversation and opens the assistant's turn. When the conversation does not
/// start with a system message and `default_system` is given, that system message is
/// inserted first (as the SmolLM2 template does). Encode the result with special tokens on.
pub fn chatml(messages: &[Message], default_system: Option<&str>) -> String {
    let mut s = String::new();
    let mut turn = |role: &str, content: &str| {
        s.push_str("<|im_start|>");
        s.push_str(role);
        s.push('\n');
        s.push_str(content);
        s.push_str(IM_END);
        s.push('\n');
    };
    if messages.first().is_none_or(|m| m.role != Role::System) {
        if let Some(sys) = default_system {
            turn("system", sys);
        }
    }
    for m in messages {
        turn(m.role.name(), m.content);
    }
    s.push_str("<|im_start|>assistant\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_layout() {
        let msgs = [Message {
            role: Role::User,
            content: "Hi",
        }];
        assert_eq!(
            chatml(&msgs, Some("Be brief.")),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            chatml(&msgs, None),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}

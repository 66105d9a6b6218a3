//! From what a client asks for to the token ids `Engine::generate` takes. The prompt's size is
//! checked against the context twice: before encoding, with a lower bound on its token count
//! that costs one pass over the bytes (so a prompt that cannot fit costs no merge work), and
//! after, exactly. Chat content is encoded with special tokens off (see `chat`).

use alloc::vec::Vec;

use crate::chat::{self, Message, Template};
use crate::model::Model;
use crate::tokenizer::EncodeWork;

pub enum Prompt<'a> {
    /// Plain text, special tokens off (BOS first when the model asks for it).
    Text(&'a str),
    /// A conversation in the model's chat template; the model's default system message is
    /// used when the conversation has none.
    Chat(&'a [Message<'a>]),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromptError {
    /// The prompt does not leave a position to generate into in a context of `context`
    /// positions. `exact` is false when `tokens` is the lower bound counted before encoding.
    TooLong {
        tokens: usize,
        exact: bool,
        context: usize,
    },
    /// No tokens, and the model has no BOS to start from.
    Empty,
    /// A chat for a model whose file names no chat template we know.
    NoChatTemplate,
    /// The vocabulary lacks a marker of the chat template as a control token.
    MissingControlToken(&'static str),
}

impl core::fmt::Display for PromptError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PromptError::TooLong {
                tokens,
                exact,
                context,
            } => write!(
                f,
                "prompt is {}{tokens} tokens; the context holds {context} (generation needs \
                 at least one more)",
                if *exact { "" } else { "at least " },
            ),
            PromptError::Empty => write!(
                f,
                "empty prompt: this model has no BOS token to start from; give some text"
            ),
            PromptError::NoChatTemplate => {
                write!(f, "the model has no chat template: use `prompt`")
            }
            PromptError::MissingControlToken(m) => write!(
                f,
                "the model's vocabulary has no control token {m:?} for its chat template"
            ),
        }
    }
}

/// Token ids of `prompt` for `model` in a context of `context` positions: at most
/// `context - 1` of them, since generation needs one more.
pub fn encode(model: &Model, prompt: Prompt, context: usize) -> Result<Vec<u32>, PromptError> {
    let tok = &model.tokenizer;
    let capacity = context.saturating_sub(1);
    let mut ids: Vec<u32> = tok.prompt_start().into_iter().collect();
    let too_long = |tokens, exact| PromptError::TooLong {
        tokens,
        exact,
        context,
    };
    let mut work = EncodeWork::default();
    match prompt {
        Prompt::Text(text) => {
            let at_least = ids.len() + tok.min_tokens(text);
            if at_least > capacity {
                return Err(too_long(at_least, false));
            }
            tok.encode_into(text, false, &mut ids, &mut work);
        }
        Prompt::Chat(messages) => {
            let template = model
                .chat_template
                .as_deref()
                .and_then(Template::from_name)
                .ok_or(PromptError::NoChatTemplate)?;
            let parts = template.parts(messages, model.default_system.as_deref());
            let at_least = ids.len() + chat::min_tokens(tok, &parts);
            if at_least > capacity {
                return Err(too_long(at_least, false));
            }
            chat::encode(tok, &parts, &mut ids, &mut work)
                .map_err(PromptError::MissingControlToken)?;
        }
    }
    if ids.is_empty() {
        return Err(PromptError::Empty);
    }
    if ids.len() > capacity {
        return Err(too_long(ids.len(), true));
    }
    Ok(ids)
}

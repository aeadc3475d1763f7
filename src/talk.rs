//! `jjongal talk`: the conversation socket from a shell, for trying the service. Each line
//! read from standard input is a `user_message`; the guide's answers are printed as they
//! come. At the end of input the conversation ends, asking for its story
//! (`end_conversation` with `create_story`) unless told not to, and the story's id is
//! printed as `story_id: …`.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio_tungstenite::tungstenite::Message;

/// What `talk` was asked.
pub struct Talk {
    /// The server's base URL (`http://…`), as clients reach it.
    pub server: String,
    pub token: String,
    pub child_name: String,
    pub age: u32,
    pub interests: Vec<String>,
    /// Ask for the conversation's story when it ends.
    pub story: bool,
}

/// How long an answer may take (the offline guide answers at once; a model may not).
const ANSWER_WAIT: Duration = Duration::from_secs(120);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Talks until standard input ends; `Err` for a refused or broken conversation.
pub async fn run(talk: Talk) -> anyhow::Result<()> {
    let base = talk.server.trim_end_matches('/');
    let Some(rest) = base.strip_prefix("http://") else {
        bail!(
            "talk speaks plain ws:// to a development server: give --server http://host:port (not {base})"
        );
    };
    let url = format!("ws://{rest}/wss/v1/audio");
    let request = request_with_token(&url, &talk.token)?;
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("connecting to {url}"))?;

    send(
        &mut socket,
        json!({"type": "start_conversation", "payload": {
            "child_name": talk.child_name, "age": talk.age, "interests": talk.interests,
        }}),
    )
    .await?;
    let started = answer(&mut socket, &["conversation_started"]).await?;
    println!(
        "conversation_id: {}",
        started["conversation_id"].as_str().unwrap_or_default()
    );
    say(&started);

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        println!("나: {line}");
        send(&mut socket, json!({"type": "user_message", "text": line})).await?;
        say(&answer(&mut socket, &["ai_response"]).await?);
    }

    let payload = if talk.story {
        json!({"create_story": {}})
    } else {
        json!({})
    };
    send(
        &mut socket,
        json!({"type": "end_conversation", "payload": payload}),
    )
    .await?;
    loop {
        let message = answer(&mut socket, &["story_id_assigned", "conversation_ended"]).await?;
        match message["type"].as_str() {
            Some("story_id_assigned") => println!(
                "story_id: {}",
                message["story_id"].as_str().unwrap_or_default()
            ),
            _ => break,
        }
    }
    let _ = socket.close(None).await;
    Ok(())
}

/// The socket's handshake request, the access token in its `token` query parameter
/// (spec §7.1), escaped.
fn request_with_token(
    url: &str,
    token: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut escaped = String::with_capacity(token.len());
    crate::media::push_percent_encoded(&mut escaped, token);
    let mut request = format!("{url}?token={escaped}").into_client_request()?;
    request
        .headers_mut()
        .insert("user-agent", "jjongal-talk".parse()?);
    Ok(request)
}

async fn send(socket: &mut Socket, message: Value) -> anyhow::Result<()> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .context("sending to the conversation socket")
}

/// The next message of one of the `kinds`; `notice`s are printed on the way, an `error`
/// or a closed socket is the failure.
async fn answer(socket: &mut Socket, kinds: &[&str]) -> anyhow::Result<Value> {
    loop {
        let frame = tokio::time::timeout(ANSWER_WAIT, socket.next())
            .await
            .context("no answer from the conversation socket")?;
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(close))) => bail!(
                "the server closed the conversation{}",
                close
                    .map(|c| format!(" ({} {})", u16::from(c.code), c.reason))
                    .unwrap_or_default()
            ),
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e).context("reading the conversation socket"),
            None => bail!("the conversation socket ended"),
        };
        let message: Value = serde_json::from_str(&text).context("a message that is not JSON")?;
        let kind = message["type"].as_str().unwrap_or_default();
        match kind {
            "error" => bail!(
                "{}: {}",
                message["error_code"].as_str().unwrap_or_default(),
                message["error_message"].as_str().unwrap_or_default()
            ),
            "notice" => eprintln!(
                "(notice: {})",
                message["message"]
                    .as_str()
                    .or(message["code"].as_str())
                    .unwrap_or_default()
            ),
            _ if kinds.contains(&kind) => return Ok(message),
            _ => {}
        }
    }
}

/// Prints the guide's words (and where its spoken reply is, when there is one).
fn say(message: &Value) {
    println!("쫑이: {}", message["text"].as_str().unwrap_or_default());
    if let Some(audio) = message["audio_url"].as_str() {
        println!("      (audio: {audio})");
    }
}

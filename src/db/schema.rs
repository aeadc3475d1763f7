//! The one diesel schema for both backends. Column types are portable on purpose:
//! ids are text UUIDs, timestamps are UTC `TIMESTAMP`s truncated to microseconds.

diesel::table! {
    users (id) {
        id -> Text,
        login_id -> Text,
        login_key -> Text,
        password_hash -> Text,
        name -> Text,
        age -> Integer,
        role -> Text,
        guardian_consent_at -> Timestamp,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Text,
        user_id -> Text,
        family_id -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::allow_tables_to_appear_in_same_query!(users, refresh_tokens);

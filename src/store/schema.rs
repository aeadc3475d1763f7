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
        voice_id -> Nullable<Text>,
        voice_status -> Text,
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

diesel::table! {
    conversations (id) {
        id -> Text,
        owner_id -> Text,
        child_name -> Nullable<Text>,
        child_age -> Nullable<Integer>,
        interests -> Text,
        status -> Text,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        ended_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    stories (id) {
        id -> Text,
        owner_id -> Text,
        conversation_id -> Nullable<Text>,
        title -> Nullable<Text>,
        title_from_guardian -> Bool,
        status -> Text,
        theme -> Text,
        characters -> Text,
        length -> Text,
        chapter_count -> Integer,
        child_name -> Text,
        child_age -> Integer,
        failure_reason -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        lease_owner -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
        attempts -> Integer,
        revision -> BigInt,
    }
}

diesel::table! {
    generation_steps (id) {
        id -> Text,
        story_id -> Text,
        step -> Text,
        chapter_number -> Nullable<Integer>,
        provider -> Text,
        attempt -> Integer,
        started_at -> Timestamp,
        duration_ms -> BigInt,
        outcome -> Text,
        error_kind -> Nullable<Text>,
        error_message -> Nullable<Text>,
        made_by -> Nullable<Text>,
    }
}

diesel::table! {
    story_requests (id) {
        id -> Text,
        owner_id -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    media_files (id) {
        id -> Text,
        owner_id -> Text,
        story_id -> Nullable<Text>,
        path -> Text,
        content_type -> Text,
        size_bytes -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    chapters (id) {
        id -> Text,
        story_id -> Text,
        chapter_number -> Integer,
        title -> Text,
        content -> Text,
        image_file_id -> Nullable<Text>,
        audio_file_id -> Nullable<Text>,
        created_at -> Timestamp,
        image_path -> Nullable<Text>,
        image_content_type -> Nullable<Text>,
        audio_path -> Nullable<Text>,
        audio_content_type -> Nullable<Text>,
    }
}

diesel::table! {
    conversation_messages (id) {
        id -> Text,
        conversation_id -> Text,
        seq -> Integer,
        role -> Text,
        text -> Text,
        flagged -> Bool,
        audio_path -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    voice_samples (id) {
        id -> Text,
        owner_id -> Text,
        path -> Text,
        format -> Text,
        size_bytes -> BigInt,
        created_at -> Timestamp,
    }
}

diesel::table! {
    ops_audit (id) {
        id -> Text,
        operator_id -> Text,
        action -> Text,
        detail -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    voice_deletions (id) {
        id -> Text,
        voice_id -> Text,
        owner_id -> Text,
        status -> Text,
        last_error -> Text,
        attempts -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    voice_consents (id) {
        id -> Text,
        owner_id -> Text,
        voice_of -> Text,
        provider -> Text,
        text_version -> Text,
        text -> Text,
        given_at -> Timestamp,
        withdrawn_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    purge_runs (id) {
        id -> Text,
        slot -> Nullable<BigInt>,
        trigger -> Text,
        process -> Text,
        started_at -> Timestamp,
        finished_at -> Nullable<Timestamp>,
        conversations -> Integer,
        reply_audio -> Integer,
        voice_samples -> Integer,
        error -> Nullable<Text>,
    }
}

diesel::table! {
    data_exports (id) {
        id -> Text,
        owner_id -> Text,
        started_at -> Timestamp,
    }
}

diesel::table! {
    chapter_regenerations (id) {
        id -> Text,
        story_id -> Text,
        owner_id -> Text,
        chapter_number -> Integer,
        redo_text -> Bool,
        redo_image -> Bool,
        redo_audio -> Bool,
        status -> Text,
        failure_reason -> Nullable<Text>,
        attempts -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(conversations -> users (owner_id));
diesel::joinable!(stories -> users (owner_id));
diesel::joinable!(chapters -> stories (story_id));
diesel::allow_tables_to_appear_in_same_query!(
    users,
    refresh_tokens,
    conversations,
    stories,
    media_files,
    chapters,
    generation_steps,
    story_requests,
    conversation_messages,
    voice_samples,
    ops_audit,
    voice_deletions,
    voice_consents,
    purge_runs,
    data_exports,
    chapter_regenerations
);

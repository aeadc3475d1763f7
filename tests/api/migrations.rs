//! Schema migrations run on databases that already hold data.

use crate::db_tests;
use crate::helpers::{Db, Seed};

/// Migration 000009 on a populated PostgreSQL database (issue 30): undone on a database
/// holding a story with chapters and media, then run again by a server starting on it.
/// The columns referring to `COLLATE "C"` ids take that collation, a join on such a pair
/// can use the referring column's index (with two collations it cannot, whatever the
/// planner would like), and the story reads back the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(jjongal_pg),
    ignore = "PostgreSQL only: set JJONGAL_TEST_DATABASE_URL to run it"
)]
async fn the_id_collation_migration_runs_on_a_populated_database() {
    let app = crate::helpers::spawn_app(Db::Postgres).await;
    let (token, id, before) = populate(&app, "collation.migration").await;
    let path = format!("/api/v1/stories/{id}");

    let columns = "('stories', 'conversation_id'), ('media_files', 'story_id'), \
        ('chapters', 'story_id'), ('chapters', 'image_file_id'), ('chapters', 'audio_file_id'), \
        ('generation_steps', 'story_id'), ('conversation_messages', 'conversation_id')";
    // Fails (so the test fails) unless every listed column has `collation` (an SQL
    // literal; NULL is the database default).
    let collations_are = |collation: &str| {
        format!(
            "DO $$ DECLARE n integer; BEGIN \
               SELECT count(*) INTO n FROM (VALUES {columns}) AS w(t, c) \
               JOIN information_schema.columns i ON i.table_name = w.t AND i.column_name = w.c \
               WHERE i.collation_name IS NOT DISTINCT FROM {collation}; \
               IF n <> 7 THEN RAISE EXCEPTION 'only % of 7 columns have the collation expected', n; END IF; \
             END $$"
        )
    };
    // Fails unless joining chapters on their story's id can use the chapters index.
    let join_uses_the_index = format!(
        "DO $$ DECLARE line text; plan text := ''; BEGIN \
           SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
           FOR line IN EXPLAIN SELECT c.id FROM stories s JOIN chapters c ON c.story_id = s.id \
             WHERE s.id = '{id}' LOOP plan := plan || line || ' '; END LOOP; \
           IF plan NOT LIKE '%Index Scan using chapters_story_id_chapter_number_key%' \
             THEN RAISE EXCEPTION 'chapters not found by their index: %', plan; END IF; \
         END $$"
    );
    let storage = app.storage();
    storage.execute(&collations_are("'C'")).await;
    storage.execute(&join_uses_the_index).await;

    // Undone, as on a database of the release before: the index is out of the join's reach.
    storage
        .execute(include_str!(
            "../../migrations/postgres/2026-12-05-000009_id_collation/down.sql"
        ))
        .await;
    storage
        .execute("DELETE FROM __diesel_schema_migrations WHERE version = '20261205000009'")
        .await;
    storage.execute(&collations_are("NULL")).await;
    let refused = storage.try_execute(&join_uses_the_index).await;
    assert!(
        refused.is_err_and(|e| e.contains("chapters not found by their index")),
        "with two collations the join cannot use the index"
    );

    // A server starting on the populated database migrates it.
    let again = crate::helpers::spawn_app_sharing(&app, &[]).await;
    storage.execute(&collations_are("'C'")).await;
    storage.execute(&join_uses_the_index).await;
    let after = again.get(&path, Some(&token)).await.assert_ok(200);
    assert_eq!(
        unsigned_chapters(&after),
        unsigned_chapters(&before),
        "the chapters read back the same"
    );
}

/// An account holding a completed story of three chapters, each with a picture and a
/// narration: its token, the story's id and the story as read before a migration.
async fn populate(
    app: &crate::helpers::TestApp,
    login: &str,
) -> (String, jjongal::vocabulary::StoryId, serde_json::Value) {
    let token = app.new_account(login).await;
    let id = app
        .seed_story(
            &token,
            Seed {
                title: Some("산호 마을"),
                status: jjongal::domain::stories::StoryStatus::Completed,
                chapters: 3,
                audio: true,
                ..Seed::default()
            },
        )
        .await;
    let before = app
        .get(&format!("/api/v1/stories/{id}"), Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(before["chapters"].as_array().unwrap().len(), 3);
    (token, id, before)
}

/// A story's chapters with their media URLs' signatures and expiry left out (they differ
/// by the signing time; everything else is comparable).
fn unsigned_chapters(story: &serde_json::Value) -> serde_json::Value {
    let mut chapters = story["chapters"].clone();
    for c in chapters.as_array_mut().unwrap() {
        for media in ["image", "audio"] {
            let url = c[media]["url"].as_str().expect("the chapter has its media");
            c[media]["url"] = url.split('?').next().unwrap().into();
            c[media]["expiry_time"] = serde_json::Value::Null;
        }
    }
    chapters
}

/// Migration 000010 on a populated database, both backends: undone on a database holding
/// a story whose chapters have pictures and narration, then run again by a server
/// starting on it. Its backfill copies each file's path and content type onto its chapter
/// (readers no longer look files up), so the story reads back with the same media.
async fn the_chapter_media_paths_migration_backfills_a_populated_database(db: Db) {
    let app = crate::helpers::spawn_app(db).await;
    let (token, id, before) = populate(&app, "paths.migration").await;
    let path = format!("/api/v1/stories/{id}");

    let storage = app.storage();
    let down = match db {
        Db::Postgres => {
            include_str!("../../migrations/postgres/2026-12-05-000010_chapter_media_paths/down.sql")
        }
        Db::Sqlite => {
            include_str!("../../migrations/sqlite/2026-12-05-000010_chapter_media_paths/down.sql")
        }
    };
    storage.execute(down).await;
    storage
        .execute("DELETE FROM __diesel_schema_migrations WHERE version = '20261205000010'")
        .await;
    let gone = storage.try_execute("SELECT image_path FROM chapters").await;
    assert!(gone.is_err(), "undone, the chapters have no paths");

    let again = crate::helpers::spawn_app_sharing(&app, &[]).await;
    let after = again.get(&path, Some(&token)).await.assert_ok(200);
    assert_eq!(
        unsigned_chapters(&after),
        unsigned_chapters(&before),
        "the chapters read back with the same media"
    );
    // The page reads the same chapters.
    let page = again
        .get("/api/v1/stories?page_size=5", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(
        unsigned_chapters(&page["results"][0]),
        unsigned_chapters(&before)
    );
}

/// Migration 000016 on a populated database, both backends: undone on a database holding
/// a story with chapters, then run again by a server starting on it. The stories already
/// there count their chapters' changes from then on: a change made after the migration is
/// read at once by a server that had kept the chapters (`store::chapter_cache`).
async fn the_story_revision_migration_runs_on_a_populated_database(db: Db) {
    let app = crate::helpers::spawn_app(db).await;
    let (token, id, before) = populate(&app, "revision.migration").await;
    let path = format!("/api/v1/stories/{id}");

    let storage = app.storage();
    let down = match db {
        Db::Postgres => {
            include_str!("../../migrations/postgres/2026-12-08-000016_story_revisions/down.sql")
        }
        Db::Sqlite => {
            include_str!("../../migrations/sqlite/2026-12-08-000016_story_revisions/down.sql")
        }
    };
    storage.execute(down).await;
    storage
        .execute("DELETE FROM __diesel_schema_migrations WHERE version = '20261208000016'")
        .await;
    let gone = storage.try_execute("SELECT revision FROM stories").await;
    assert!(gone.is_err(), "undone, the stories have no revision");

    let again = crate::helpers::spawn_app_sharing(&app, &[]).await;
    for _ in 0..2 {
        let after = again.get(&path, Some(&token)).await.assert_ok(200);
        assert_eq!(unsigned_chapters(&after), unsigned_chapters(&before));
    }
    storage
        .execute(&format!(
            "UPDATE chapters SET title = '고친 제목' WHERE story_id = '{id}' AND chapter_number = 3"
        ))
        .await;
    let story = again.get(&path, Some(&token)).await.assert_ok(200);
    assert_eq!(story["chapters"][2]["title"], "고친 제목");
    let page = again
        .get("/api/v1/stories?page_size=5", Some(&token))
        .await
        .assert_ok(200);
    assert_eq!(page["results"][0]["chapters"][2]["title"], "고친 제목");
}

/// Issue 33: nothing stored before the voice-cloning consent existed had it. Applied to
/// a database from before (a sample — then possibly the child's speech — and a voice
/// cloned without consent), the consent migration deletes the samples, stops using the
/// voice and records it for deletion at the provider, where the operator sees it.
async fn the_consent_migration_drops_what_was_stored_without_consent(db: Db) {
    let app = crate::helpers::spawn_app(db).await;
    let token = app.new_account("before.consent").await;
    let user = app.user(&token).await.id.to_string();
    let storage = app.storage();
    let down = match db {
        Db::Postgres => {
            include_str!("../../migrations/postgres/2026-12-06-000011_voice_consents/down.sql")
        }
        Db::Sqlite => {
            include_str!("../../migrations/sqlite/2026-12-06-000011_voice_consents/down.sql")
        }
    };
    storage.execute(down).await;
    storage
        .execute("DELETE FROM __diesel_schema_migrations WHERE version = '20261206000011'")
        .await;
    // What the old code left: a sample and a clone, without any consent.
    storage
        .execute(&format!(
            "INSERT INTO voice_samples (id, owner_id, path, format, size_bytes, created_at) VALUES \
             ('00000000-0000-4000-8000-0000000000c1', '{user}', 'old.wav', 'wav', 44, '2026-12-01 00:00:00')"
        ))
        .await;
    storage
        .execute(&format!(
            "UPDATE users SET voice_id = 'oldVoice', voice_status = 'cloned' WHERE id = '{user}'"
        ))
        .await;

    let dir = app
        .domain
        .config()
        .data_dir
        .join("voice-samples")
        .join(&user);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("old.wav"), b"RIFF....WAVE").unwrap();

    let again = crate::helpers::spawn_app_sharing(&app, &[]).await;
    assert_eq!(
        again.user(&token).await.voice_id,
        None,
        "the voice is no longer used"
    );
    // Its file has no row now: the purge sweeps it.
    let purged = again.domain.retention().purge_now("test").await.unwrap();
    assert_eq!(purged.voice_samples, 1, "{purged:?}");
    assert!(!dir.join("old.wav").exists());
    assert_eq!(
        again
            .domain
            .voices()
            .sample_count(again.user(&token).await.id)
            .await
            .unwrap(),
        0,
        "the samples are gone"
    );
    // Recorded for deletion at the provider (the operator's list; its id is a UUID).
    let ops = crate::ops::operator(&again, "migration.auditor").await;
    let deletions = again
        .graphql(
            "{ ops { voiceDeletions { voiceId ownerId status lastError } } }",
            serde_json::json!({}),
            Some(&ops),
        )
        .await
        .json();
    let listed = &deletions["data"]["ops"]["voiceDeletions"];
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{deletions}");
    assert_eq!(listed[0]["voiceId"], "oldVoice");
    assert_eq!(listed[0]["ownerId"], user.as_str());
    assert_eq!(listed[0]["status"], "pending");
}

db_tests!(
    the_chapter_media_paths_migration_backfills_a_populated_database,
    the_story_revision_migration_runs_on_a_populated_database,
    the_consent_migration_drops_what_was_stored_without_consent,
);

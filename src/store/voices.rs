//! Voice samples and the account's cloned voice.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use chrono::NaiveDateTime;

use super::models::{VoiceConsentRow, VoiceDeletionRow, VoiceSampleRow};
use super::schema::{users, voice_consents, voice_deletions, voice_samples};
use super::types::{DeletionStatus, UserId, VoiceDeletionId, VoiceSampleId, VoiceStatus};
use super::{Db, DbError, locked_transaction, on_db};

/// The caps on one account's samples.
pub(crate) struct SampleCaps {
    pub(crate) count: i64,
    pub(crate) bytes: i64,
}

/// Why a sample was not admitted.
pub(crate) enum NotAdmitted {
    /// The account's samples are at their caps.
    Full,
    /// No voice-cloning consent for `provider` stands (none given, or withdrawn, or
    /// given for another provider).
    NoConsent,
}

/// Inserts a sample's row if the account's voice-cloning consent for `provider` stands
/// and that does not take it over `caps`; the account's sample count with it, or why
/// not (nothing stored). The row is
/// written first (so on SQLite the transaction holds the write lock from its first
/// statement), then the account's samples are counted with it, and the transaction is
/// rolled back if they are too many; on PostgreSQL an advisory lock per account
/// serialises concurrent samples of one account.
pub(crate) async fn admit_sample(
    db: &mut Db<'_>,
    row: &VoiceSampleRow,
    caps: SampleCaps,
    provider: &str,
) -> Result<Result<i64, NotAdmitted>, DbError> {
    enum Refused {
        Db(DbError),
        Not(NotAdmitted),
    }
    impl From<diesel::result::Error> for Refused {
        fn from(e: diesel::result::Error) -> Refused {
            Refused::Db(e.into())
        }
    }
    impl From<DbError> for Refused {
        fn from(e: DbError) -> Refused {
            Refused::Db(e)
        }
    }
    let key = format!("voice:{}", row.owner_id);
    let admitted: Result<i64, Refused> = locked_transaction!(db, &key, |tx| {
        on_db!(&mut *tx, |c| diesel::insert_into(voice_samples::table)
            .values(row)
            .execute(c)
            .await)?;
        // Under the same lock as a withdrawal: a sample is never stored after it.
        if current_consent(&mut *tx, row.owner_id, provider)
            .await?
            .is_none()
        {
            return Err(Refused::Not(NotAdmitted::NoConsent));
        }
        // A few rows at most (the cap), so summed here, not as SQL NUMERIC.
        let sizes: Vec<i64> = on_db!(&mut *tx, |c| voice_samples::table
            .filter(voice_samples::owner_id.eq(&row.owner_id))
            .select(voice_samples::size_bytes)
            .load(c)
            .await)?;
        let count = sizes.len() as i64;
        if count > caps.count || sizes.iter().sum::<i64>() > caps.bytes {
            return Err(Refused::Not(NotAdmitted::Full));
        }
        Ok(count)
    });
    match admitted {
        Ok(count) => Ok(Ok(count)),
        Err(Refused::Not(why)) => Ok(Err(why)),
        Err(Refused::Db(e)) => Err(e),
    }
}

/// The account's standing voice-cloning consent for `provider`, if any.
pub(crate) async fn current_consent(
    db: &mut Db<'_>,
    owner: UserId,
    provider: &str,
) -> Result<Option<VoiceConsentRow>, DbError> {
    Ok(on_db!(db, |c| voice_consents::table
        .filter(voice_consents::owner_id.eq(owner))
        .filter(voice_consents::provider.eq(provider))
        .filter(voice_consents::withdrawn_at.is_null())
        .order(voice_consents::given_at.desc())
        .select(VoiceConsentRow::as_select())
        .first(c)
        .await
        .optional())?)
}

/// Every voice-cloning consent the account gave, newest first (withdrawn ones too).
pub(crate) async fn consents(
    db: &mut Db<'_>,
    owner: UserId,
) -> Result<Vec<VoiceConsentRow>, DbError> {
    Ok(on_db!(db, |c| voice_consents::table
        .filter(voice_consents::owner_id.eq(owner))
        .order((voice_consents::given_at.desc(), voice_consents::id.desc()))
        .select(VoiceConsentRow::as_select())
        .load(c)
        .await)?)
}

/// Records `row` unless a consent for its provider already stands; the standing one.
/// The row is written first (on SQLite the transaction then holds the write lock, so two
/// at once do not both read and then both write), and rolled back if another stood.
pub(crate) async fn give_consent(
    db: &mut Db<'_>,
    row: &VoiceConsentRow,
) -> Result<VoiceConsentRow, DbError> {
    enum Outcome {
        Db(DbError),
        Standing(Box<VoiceConsentRow>),
    }
    impl From<diesel::result::Error> for Outcome {
        fn from(e: diesel::result::Error) -> Outcome {
            Outcome::Db(e.into())
        }
    }
    let key = format!("voice:{}", row.owner_id);
    let given: Result<(), Outcome> = locked_transaction!(db, &key, |tx| {
        on_db!(&mut *tx, |c| diesel::insert_into(voice_consents::table)
            .values(row)
            .execute(c)
            .await)?;
        let standing: Vec<VoiceConsentRow> = on_db!(&mut *tx, |c| voice_consents::table
            .filter(voice_consents::owner_id.eq(row.owner_id))
            .filter(voice_consents::provider.eq(&row.provider))
            .filter(voice_consents::withdrawn_at.is_null())
            .filter(voice_consents::id.ne(row.id))
            .order(voice_consents::given_at.asc())
            .select(VoiceConsentRow::as_select())
            .load(c)
            .await)?;
        match standing.into_iter().next() {
            Some(earlier) => Err(Outcome::Standing(Box::new(earlier))),
            None => Ok(()),
        }
    });
    match given {
        Ok(()) => Ok(row.clone()),
        Err(Outcome::Standing(earlier)) => Ok(*earlier),
        Err(Outcome::Db(e)) => Err(e),
    }
}

/// Withdraws every standing consent of `owner` and deletes its samples' rows, under the
/// lock samples are admitted with (no sample lands after it); whether one stood.
pub(crate) async fn withdraw_consents(
    db: &mut Db<'_>,
    owner: UserId,
    at: NaiveDateTime,
) -> Result<bool, DbError> {
    let key = format!("voice:{owner}");
    let withdrawn: Result<usize, DbError> = locked_transaction!(db, &key, |tx| {
        let n = on_db!(&mut *tx, |c| diesel::update(
            voice_consents::table
                .filter(voice_consents::owner_id.eq(owner))
                .filter(voice_consents::withdrawn_at.is_null()),
        )
        .set(voice_consents::withdrawn_at.eq(Some(at)))
        .execute(c)
        .await)?;
        on_db!(&mut *tx, |c| diesel::delete(
            voice_samples::table.filter(voice_samples::owner_id.eq(owner))
        )
        .execute(c)
        .await)?;
        Ok(n)
    });
    Ok(withdrawn? > 0)
}

/// How many samples `owner` has stored.
pub(crate) async fn sample_count(db: &mut Db<'_>, owner: UserId) -> Result<i64, DbError> {
    Ok(on_db!(db, |c| voice_samples::table
        .filter(voice_samples::owner_id.eq(owner))
        .count()
        .get_result(c)
        .await)?)
}

/// Whether sample `id`'s row is still there (not deleted by a withdrawal, a clone or the
/// purge).
pub(crate) async fn sample_exists(db: &mut Db<'_>, id: VoiceSampleId) -> Result<bool, DbError> {
    let n: i64 = on_db!(db, |c| voice_samples::table
        .filter(voice_samples::id.eq(id))
        .count()
        .get_result(c)
        .await)?;
    Ok(n > 0)
}

pub(crate) async fn delete_sample(db: &mut Db<'_>, id: VoiceSampleId) -> Result<(), DbError> {
    on_db!(db, |c| diesel::delete(voice_samples::table.find(id))
        .execute(c)
        .await)?;
    Ok(())
}

/// The account's `n` newest samples stored since `since` (the consent they were
/// admitted under).
pub(crate) async fn newest_samples(
    db: &mut Db<'_>,
    owner: UserId,
    since: NaiveDateTime,
    n: i64,
) -> Result<Vec<VoiceSampleRow>, DbError> {
    Ok(on_db!(db, |c| voice_samples::table
        .filter(voice_samples::owner_id.eq(owner))
        .filter(voice_samples::created_at.ge(since))
        .order_by(voice_samples::created_at.desc())
        .limit(n)
        .select(VoiceSampleRow::as_select())
        .load(c)
        .await)?)
}

/// Moves the account's voice from not cloned to cloning; `false` when another caller
/// did first (or it is cloned already).
pub(crate) async fn claim_cloning(db: &mut Db<'_>, owner: UserId) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(
        users::table
            .find(owner)
            .filter(users::voice_status.eq(VoiceStatus::NotCloned)),
    )
    .set(users::voice_status.eq(VoiceStatus::Cloning))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// Records where the account's voice stands, and its id at the provider.
pub(crate) async fn set_voice(
    db: &mut Db<'_>,
    owner: UserId,
    status: VoiceStatus,
    voice_id: Option<&str>,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(users::table.find(owner))
        .set((users::voice_status.eq(status), users::voice_id.eq(voice_id)))
        .execute(c)
        .await)?;
    Ok(())
}

/// Ends this process's cloning: the voice's outcome is written only while the account
/// is still cloning (not deleted, its voice not deleted meanwhile); `false` otherwise.
pub(crate) async fn end_cloning(
    db: &mut Db<'_>,
    owner: UserId,
    status: VoiceStatus,
    voice_id: Option<&str>,
) -> Result<bool, DbError> {
    let n = on_db!(db, |c| diesel::update(
        users::table
            .find(owner)
            .filter(users::voice_status.eq(VoiceStatus::Cloning)),
    )
    .set((users::voice_status.eq(status), users::voice_id.eq(voice_id)))
    .execute(c)
    .await)?;
    Ok(n == 1)
}

/// The account's voice id at the provider, if it has one.
pub(crate) async fn voice_id(db: &mut Db<'_>, owner: UserId) -> Result<Option<String>, DbError> {
    Ok(on_db!(db, |c| users::table
        .find(owner)
        .select(users::voice_id)
        .first(c)
        .await)?)
}

/// Deletes the account's samples' rows.
pub(crate) async fn delete_samples(db: &mut Db<'_>, owner: UserId) -> Result<(), DbError> {
    on_db!(db, |c| diesel::delete(
        voice_samples::table.filter(voice_samples::owner_id.eq(owner))
    )
    .execute(c)
    .await)?;
    Ok(())
}

/// Records a cloned voice the provider did not confirm deleted.
pub(crate) async fn insert_deletion(
    db: &mut Db<'_>,
    row: &VoiceDeletionRow,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::insert_into(voice_deletions::table)
        .values(row)
        .execute(c)
        .await)?;
    Ok(())
}

/// The newest `limit` voice deletion records, any status, newest first.
pub(crate) async fn deletions(
    db: &mut Db<'_>,
    limit: i64,
) -> Result<Vec<VoiceDeletionRow>, DbError> {
    Ok(on_db!(db, |c| voice_deletions::table
        .order_by((
            voice_deletions::created_at.desc(),
            voice_deletions::id.desc()
        ))
        .limit(limit)
        .select(VoiceDeletionRow::as_select())
        .load(c)
        .await)?)
}

/// The voice deletions still pending at the provider, oldest first.
pub(crate) async fn pending_deletions(db: &mut Db<'_>) -> Result<Vec<VoiceDeletionRow>, DbError> {
    Ok(on_db!(db, |c| voice_deletions::table
        .filter(voice_deletions::status.eq(DeletionStatus::Pending))
        .order_by((voice_deletions::created_at, voice_deletions::id))
        .select(VoiceDeletionRow::as_select())
        .load(c)
        .await)?)
}

/// Records another attempt at a pending deletion: its outcome `status` and, while it
/// stays pending, the provider's answer.
pub(crate) async fn settle_deletion(
    db: &mut Db<'_>,
    id: VoiceDeletionId,
    status: DeletionStatus,
    last_error: &str,
    now: NaiveDateTime,
) -> Result<(), DbError> {
    on_db!(db, |c| diesel::update(voice_deletions::table.find(id))
        .set((
            voice_deletions::status.eq(status),
            voice_deletions::last_error.eq(last_error),
            voice_deletions::attempts.eq(voice_deletions::attempts + 1),
            voice_deletions::updated_at.eq(now),
        ))
        .execute(c)
        .await)?;
    Ok(())
}

/// Every sample row of `owner`, oldest first (for the guardian's export).
pub(crate) async fn samples_of(
    db: &mut Db<'_>,
    owner: UserId,
) -> Result<Vec<VoiceSampleRow>, DbError> {
    Ok(on_db!(db, |c| voice_samples::table
        .filter(voice_samples::owner_id.eq(owner))
        .order((voice_samples::created_at.asc(), voice_samples::id.asc()))
        .select(VoiceSampleRow::as_select())
        .load(c)
        .await)?)
}

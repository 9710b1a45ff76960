-- The seed's tables, keyed by ids that the events carry (derived from the event id at
-- ingest), so that replaying the log into an empty database yields the same rows.
-- Every entity row has a version, bumped by each write, for If-Match.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email         varchar(255) NOT NULL,
    name          varchar(255) NOT NULL,
    password_hash varchar(255) NOT NULL,
    version       bigint NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE foods (
    id                uuid PRIMARY KEY,
    user_id           uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              varchar(255) NOT NULL,
    calories_per_100g numeric(8, 2) NOT NULL CHECK (calories_per_100g >= 0),
    protein_per_100g  numeric(8, 2) NOT NULL CHECK (protein_per_100g >= 0),
    carbs_per_100g    numeric(8, 2) NOT NULL CHECK (carbs_per_100g >= 0),
    fat_per_100g      numeric(8, 2) NOT NULL CHECK (fat_per_100g >= 0),
    version           bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX idx_foods_user_id ON foods (user_id);
CREATE INDEX idx_foods_user_name ON foods (user_id, lower(name) text_pattern_ops, id);

CREATE TABLE daily_meals (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    date       date NOT NULL,
    meal_type  varchar(50) NOT NULL CHECK (meal_type IN ('breakfast', 'lunch', 'dinner', 'snack')),
    food_id    uuid NOT NULL REFERENCES foods (id) ON DELETE CASCADE,
    amount     numeric(8, 2) NOT NULL CHECK (amount > 0),
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (user_id, date, meal_type, food_id)
);
CREATE INDEX idx_daily_meals_user_date ON daily_meals (user_id, date);
CREATE INDEX idx_daily_meals_food ON daily_meals (food_id);

CREATE TABLE user_settings (
    user_id            uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    unit_system        varchar(20) NOT NULL DEFAULT 'metric'
                       CHECK (unit_system IN ('metric', 'imperial')),
    daily_calorie_goal integer NOT NULL DEFAULT 2000 CHECK (daily_calorie_goal > 0),
    protein_percentage numeric(5, 2) NOT NULL DEFAULT 25.00
                       CHECK (protein_percentage BETWEEN 0 AND 100),
    fat_percentage     numeric(5, 2) NOT NULL DEFAULT 30.00
                       CHECK (fat_percentage BETWEEN 0 AND 100),
    version            bigint NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL,
    CHECK (protein_percentage + fat_percentage <= 100)
);

CREATE TABLE weight_entries (
    id         uuid PRIMARY KEY,
    user_id    uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    weight     numeric(5, 2) NOT NULL CHECK (weight > 0),
    date       date NOT NULL,
    version    bigint NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (user_id, date)
);

-- The inbox: one row per event id ever seen, so re-delivery and replay are harmless and
-- clients can ask what became of a write. No foreign key to users: the record of a
-- rejected or since-deleted user's event stays.
CREATE TABLE processed_events (
    event_id     uuid PRIMARY KEY,
    user_id      uuid,
    type         text NOT NULL,
    status       text NOT NULL CHECK (status IN ('applied', 'rejected')),
    reason       text,
    problem      jsonb,
    "partition"  integer NOT NULL,
    "offset"     bigint NOT NULL,
    payload_hash bytea NOT NULL,
    resource_id  uuid,
    applied_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_processed_events_user ON processed_events (user_id, applied_at);

-- How far each partition is applied, written in the same transaction as the effects.
-- The worker advances it with a compare-and-set so a worker that lost its partition can
-- never commit stale effects.
CREATE TABLE consumer_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    "partition" integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, "partition")
);

-- Change events committed with their effects; published in seq order per partition and
-- deleted once the broker acknowledged them.
CREATE TABLE outbox (
    seq         bigserial PRIMARY KEY,
    "partition" integer NOT NULL,
    user_id     uuid NOT NULL,
    change_id   text NOT NULL,
    event       jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX idx_outbox_partition ON outbox ("partition", seq);

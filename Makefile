# Food diary pipeline: top-level build.
#
#   make            build the four binaries into build/bin
#   make run        install what is missing, build, run the whole stack in the foreground
#   make up / down  the same stack in the background / stop it (state under .run/)
#   make reset      stop the stack and wipe .run/
#   make test       install what is missing, build with sanitizers, run every test
#   make format     clang-format the sources; make format-check fails on a difference
#
# SAN=address,undefined builds into build/san with the sanitizers on.

CC      ?= cc
PKGS    := rdkafka libpq libevent libevent_pthreads jansson libsodium libcyaml
WARN    := -Wall -Wextra -Wno-unused-parameter -Wmissing-prototypes -Wstrict-prototypes \
           -Wold-style-definition -Wpointer-arith -Wformat=2 -Wundef -Wshadow -Werror
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c17 -D_GNU_SOURCE $(WARN) -MMD -MP -Ishared \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lcrypt -lpthread -lm

ifdef SAN
BUILD   ?= build/san
CFLAGS  += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
else
BUILD   ?= build
endif

BIN     := $(BUILD)/bin
LIB     := $(BUILD)/libdiary.a
PROGS   := $(BIN)/diary-ingest $(BIN)/diary-worker $(BIN)/diaryctl $(BIN)/diary-devbroker

shared_src  := $(wildcard shared/*.c)
ingest_src  := $(wildcard ingest/*.c)
worker_src  := $(wildcard workers/*.c)
ctl_src     := $(wildcard diaryctl/*.c)
broker_src  := $(wildcard topics/*.c)
unit_src    := $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
UNIT := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(unit_src))

.PHONY: all deps run up down reset status test units bench format format-check clean
all: $(PROGS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(call obj,$(shared_src))
	@mkdir -p $(dir $@)
	$(AR) rcs $@ $^

$(BIN)/diary-ingest: $(call obj,$(ingest_src)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/diary-worker: $(call obj,$(worker_src)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/diaryctl: $(call obj,$(ctl_src)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BIN)/diary-devbroker: $(call obj,$(broker_src)) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests link only the pure library and cmocka.
$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(shell pkg-config --libs cmocka 2>/dev/null)

deps:
	@scripts/deps.sh

# deps runs first and on its own: the flags above come from pkg-config, so the build is a
# second make that sees the freshly installed packages.
run: deps
	@$(MAKE) --no-print-directory all
	@scripts/stack.sh run

up: deps
	@$(MAKE) --no-print-directory all
	@scripts/stack.sh up

down:
	@scripts/stack.sh down

reset:
	@scripts/stack.sh reset

status:
	@scripts/stack.sh status

# The test command: sanitizer build, unit tests, then the end-to-end tests on their own stack.
test: deps
	@$(MAKE) --no-print-directory SAN=address,undefined all units
	@scripts/run-tests.sh build/san

units: $(UNIT)

bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench.sh

format:
	clang-format -i $(shared_src) $(ingest_src) $(worker_src) $(ctl_src) $(broker_src) \
	  $(unit_src) $(wildcard */*.h)

format-check:
	@clang-format --dry-run --Werror $(shared_src) $(ingest_src) $(worker_src) $(ctl_src) \
	  $(broker_src) $(unit_src) $(wildcard */*.h)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)

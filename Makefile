# The two commands a user needs: `make run` starts the single-node engine,
# `make test` builds everything and runs every test. Both install missing
# Debian packages first (scripts/install-deps.sh, idempotent).
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
DATA_DIR ?= ./maroon-data
HTTP_PORT ?= 8080
RESP_PORT ?= 6380
NATIVE_PORT ?= 6390
# Where `make install` puts bin/maroon, lib/libmaroon.so, include/maroon/ and
# lib/cmake/maroon (docs/apps.md).
PREFIX ?= /usr/local

.PHONY: all deps build run test test-asan fuzz bench install clean

all: build

deps:
	@./scripts/install-deps.sh

$(BUILD)/build.ninja: | deps
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

run: build
	$(BUILD)/src/cli/maroon dev --data-dir $(DATA_DIR) --http-port $(HTTP_PORT) --resp-port $(RESP_PORT) --native-port $(NATIVE_PORT)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

$(ASAN_BUILD)/build.ninja: | deps
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DMAROON_SANITIZE=ON

test-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS) -LE slow

install: build
	cmake --install $(BUILD) --prefix $(PREFIX)

fuzz: deps
	./scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build
	./bench/compare-redis.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) build-fuzz

# lua-resty-ffi-go: build, run, test, bench, install.
#
#   make run    build, install missing Debian packages, start the local
#               backends and an nginx on 127.0.0.1:8080 serving examples/
#   make test   everything CI runs (with a 2-minute soak)
#   make soak   the 10-minute soak (SOAK_DURATION=seconds), figures into
#               docs/RELIABILITY.md

GO          ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BUILD       ?= build
LIB         := $(BUILD)/resty_ffi_go.so
PREFIX      ?= /usr/local
LUA_LIBDIR  ?= $(PREFIX)/share/lua/5.1
LUA_CLIBDIR ?= $(PREFIX)/lib/lua/5.1
DESTDIR     ?=
INSTALL     ?= install
GOFLAGS_BUILD ?= -trimpath

# Debian packages the project needs (tests, examples, benchmarks).
DEB_PACKAGES := nginx libnginx-mod-http-lua lua-resty-core \
	redis-server redis-sentinel redis-tools postgresql postgresql-client \
	wrk curl procps iproute2 luarocks openssl \
	libtest-base-perl libtext-diff-perl liblist-moreutils-perl libtest-longstring-perl \
	libwww-perl liburi-perl libipc-run-perl libhttp-message-perl \
	lua-nginx-redis lua-nginx-kafka

GO_SOURCES := $(shell find core modules lib examples -name '*.go' -o -name '*.h' -o -name '*.c' 2>/dev/null) go.mod go.sum

export PATH := $(PATH):/usr/local/go/bin

.PHONY: all deps build run stop test test-go test-nginx test-race fuzz bench soak install install-files uninstall clean backends backends-stop vet

all: build

deps:
	@./scripts/deps.sh $(DEB_PACKAGES)

build: $(LIB)

$(LIB): $(GO_SOURCES)
	@mkdir -p $(BUILD)
	@command -v $(GO) >/dev/null 2>&1 || { echo "error: Go is required to build resty_ffi_go.so (set GO=/path/to/go)" >&2; exit 1; }
	CGO_ENABLED=1 $(GO) build $(GOFLAGS_BUILD) -buildmode=c-shared -o $(BUILD)/linked.so ./lib
	@# Copied, not used where the linker left it: Go's linker writes through
	@# a shared mapping, which leaves the file in the page cache as 2 MiB
	@# folios that every worker then maps whole (16 MB more RSS per worker
	@# than the same file copied, installed or read back from disk; see
	@# docs/ARCHITECTURE.md "Worker memory"). The rename gives running
	@# workers' mappings their old file untouched.
	@cp $(BUILD)/linked.so $@.tmp && mv -f $@.tmp $@ && rm -f $(BUILD)/linked.so $(BUILD)/linked.h

backends: build
	@./scripts/backends.sh start

backends-stop:
	@./scripts/backends.sh stop

vet:
	$(GO) vet ./...

test-go:
	$(GO) test -count=1 ./...

test-race:
	$(GO) test -count=1 -race ./...

# Every Go fuzz target for FUZZTIME seconds each (plain `go test` replays
# only the committed seed corpora).
FUZZTIME ?= 60
fuzz:
	@./scripts/fuzz.sh $(FUZZTIME)

# The real Test::Nginx when it is installed, the project's runner otherwise.
test-nginx: build
	@./scripts/prove.sh

test: deps build
	@./scripts/test.sh

run: deps build
	@./scripts/run.sh

stop:
	@./scripts/run.sh stop

bench: deps build
	@./bench/run.sh

# its own backends on ports 21xxx (state in .run-soak): it restarts them
SOAK_DURATION ?= 600
soak: deps build
	@SOAK_DURATION=$(SOAK_DURATION) SOAK_DOC=1 SOAK_COMMAND="make soak SOAK_DURATION=$(SOAK_DURATION)" ./soak/run.sh

install: build install-files

# install-files copies what `build` made (luarocks calls it after building)
install-files:
	$(INSTALL) -d $(DESTDIR)$(LUA_LIBDIR)/resty/ffi $(DESTDIR)$(LUA_CLIBDIR)
	$(INSTALL) -m 644 lua/resty/ffi.lua $(DESTDIR)$(LUA_LIBDIR)/resty/ffi.lua
	$(INSTALL) -m 644 lua/resty/ffi/*.lua $(DESTDIR)$(LUA_LIBDIR)/resty/ffi/
	$(INSTALL) -m 755 $(LIB) $(DESTDIR)$(LUA_CLIBDIR)/resty_ffi_go.so

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/resty/ffi $(DESTDIR)$(LUA_LIBDIR)/resty/ffi.lua \
		$(DESTDIR)$(LUA_CLIBDIR)/resty_ffi_go.so

clean:
	rm -rf $(BUILD) t/servroot* bench/servroot

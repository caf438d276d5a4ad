# kvnode build. `make` builds ./node (and loadtest/kvload), `make test` installs missing Debian
# packages, builds and runs every suite, `make run` starts a local 3-node cluster.
#
# Each directory under src/ is a module compiled into its own archive, so a module and its unit
# tests (test/unit/<module>/*.cc -> build/unit_<module>) build without the others.

CXX      ?= g++
CC       ?= gcc
OPT      ?= -O2
SAN      ?=
BUILD    ?= build
CXXFLAGS := -std=c++20 $(OPT) -g -Wall -Wextra -Wno-unused-parameter -pthread -MMD -MP $(SAN)
CFLAGS   := $(OPT) -g -w -MMD -MP $(SAN)
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
CPPFLAGS := -Isrc -I$(LLHTTP_INC)
LDFLAGS  := -pthread $(SAN)
LDLIBS   := -luv -lxxhash -lsodium

MODULES := common storage proto cluster loop http peer node
# Which archives a module's unit tests link (the module itself first): the modules its sources
# and unit tests include, and theirs in turn (`make check-deps` compares them with the includes).
DEPS_common  := common
DEPS_storage := storage common
DEPS_proto   := proto common
DEPS_cluster := cluster proto storage common
DEPS_loop    := loop common
DEPS_http    := http loop common llhttp
DEPS_peer    := peer http loop cluster proto storage common llhttp
DEPS_node    := node peer http loop cluster proto storage common llhttp

srcs_of = $(wildcard src/$(1)/*.cc)
objs_of = $(patsubst src/%.cc,$(BUILD)/obj/%.o,$(call srcs_of,$(1)))
libs_of = $(foreach m,$(DEPS_$(1)),$(BUILD)/lib$(m).a)

LLHTTP_OBJS := $(BUILD)/obj/llhttp/api.o $(BUILD)/obj/llhttp/http.o $(BUILD)/obj/llhttp/llhttp.o
ALL_LIBS := $(foreach m,$(MODULES),$(BUILD)/lib$(m).a) $(BUILD)/libllhttp.a
UNIT_BINS := $(foreach m,$(MODULES),$(if $(wildcard test/unit/$(m)/*.cc),$(BUILD)/unit_$(m)))

.PHONY: all deps test unit integration fuzz fuzz-run asan tsan run clean format bench bench-single \
        bench-storage check-format check-deps test-kvload flame test-faults readme-flags bench-compare \
        bench-auth bench-hints bench-cluster-range bench-repair
.DEFAULT_GOAL := all

all: node loadtest/kvload

# ---- libraries -------------------------------------------------------------------------------
define module_rules
$(BUILD)/lib$(1).a: $(call objs_of,$(1))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

$(BUILD)/libllhttp.a: $(LLHTTP_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -I$(LLHTTP_INC) -c $< -o $@

$(BUILD)/obj/%.o: src/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(BUILD)/test/%.o: test/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -Itest $(CXXFLAGS) -c $< -o $@

# ---- binaries --------------------------------------------------------------------------------
node: $(BUILD)/main.o $(ALL_LIBS)
	$(CXX) $(LDFLAGS) -o $@ $< -Wl,--start-group $(ALL_LIBS) -Wl,--end-group $(LDLIBS)

$(BUILD)/main.o: src/main.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

KVLOAD_SRCS := $(wildcard loadtest/src/*.cc)
KVLOAD_OBJS := $(patsubst loadtest/src/%.cc,$(BUILD)/kvload/%.o,$(KVLOAD_SRCS))
$(BUILD)/kvload/%.o: loadtest/src/%.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) -Iloadtest/src $(CXXFLAGS) -c $< -o $@

# kvload includes no header of src/: it links llhttp only.
loadtest/kvload: $(KVLOAD_OBJS) $(BUILD)/libllhttp.a $(BUILD)/libcommon.a
	$(CXX) $(LDFLAGS) -o $@ $(KVLOAD_OBJS) $(BUILD)/libcommon.a $(BUILD)/libllhttp.a $(LDLIBS)

# ---- unit tests ------------------------------------------------------------------------------
$(BUILD)/test/doctest_main.o: test/unit/doctest_main.cc
	@mkdir -p $(@D)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

define unit_rules
$(BUILD)/unit_$(1): $(patsubst test/%.cc,$(BUILD)/test/%.o,$(wildcard test/unit/$(1)/*.cc)) \
                    $(BUILD)/test/doctest_main.o $(call libs_of,$(1))
	$(CXX) $(LDFLAGS) -o $$@ $$(filter %.o,$$^) -Wl,--start-group $(call libs_of,$(1)) -Wl,--end-group $(LDLIBS)
endef
$(foreach m,$(MODULES),$(eval $(call unit_rules,$(m))))

unit: $(UNIT_BINS)

# ---- fuzzing (clang, libFuzzer + ASan + UBSan) -----------------------------------------------
# Every module and llhttp are compiled again with clang and the sanitizers (fuzzer-no-link:
# coverage counters, no main) into one archive; each test/fuzz/*_fuzz.cc links what it uses
# from it.
FUZZ_SAN := -fsanitize=address,undefined
FUZZ_CXXFLAGS := -std=c++20 -O1 -g -MMD -MP -pthread $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_OBJS := $(patsubst src/%.cc,$(BUILD)/fuzz/obj/%.o,$(foreach m,$(MODULES),$(call srcs_of,$(m)))) \
             $(patsubst $(BUILD)/obj/llhttp/%.o,$(BUILD)/fuzz/obj/llhttp/%.o,$(LLHTTP_OBJS))
FUZZ_TARGETS := $(patsubst test/fuzz/%.cc,$(BUILD)/fuzz/%,$(wildcard test/fuzz/*_fuzz.cc))

$(BUILD)/fuzz/obj/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $(@D)
	clang -O1 -g -w -MMD -MP $(FUZZ_SAN) -fsanitize=fuzzer-no-link -I$(LLHTTP_INC) -c $< -o $@

$(BUILD)/fuzz/obj/%.o: src/%.cc
	@mkdir -p $(@D)
	clang++ $(CPPFLAGS) $(FUZZ_CXXFLAGS) -c $< -o $@

$(BUILD)/fuzz/libkv.a: $(FUZZ_OBJS)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/fuzz/%.o: test/fuzz/%.cc
	@mkdir -p $(@D)
	clang++ $(CPPFLAGS) -Itest $(FUZZ_CXXFLAGS) -c $< -o $@

$(BUILD)/fuzz/%: $(BUILD)/fuzz/%.o $(BUILD)/fuzz/libkv.a
	clang++ -pthread $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(BUILD)/fuzz/libkv.a $(LDLIBS)

fuzz: $(FUZZ_TARGETS)

# ---- suites ----------------------------------------------------------------------------------
# iproute2 and nftables: the fault suite's namespaces, links, drop rules and qdiscs.
deps:
	@bash test/deps.sh iproute2 nftables

test: deps check-deps
	@$(MAKE) --no-print-directory -j$$(nproc) all unit fuzz
	@bash test/run_all.sh

asan:
	@$(MAKE) --no-print-directory -j$$(nproc) BUILD=build/asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" unit
	@bash test/run_unit.sh build/asan

tsan:
	@$(MAKE) --no-print-directory -j$$(nproc) BUILD=build/tsan OPT=-O1 SAN="-fsanitize=thread" unit
	@bash test/run_unit.sh build/tsan

# The fault suite in every peer mode, 60 s each, with every assertion but divergence (see
# test/faults/run.py; needs root and network namespaces, else it says it skipped). More flags:
# make test-faults FAULTS_FLAGS="--seed 42 --assert-divergence"
FAULTS_FLAGS ?=
test-faults: deps node
	@python3 test/faults/run.py --duration 60 $(FAULTS_FLAGS)

run:
	@bash test/deps.sh --build
	@$(MAKE) --no-print-directory -j$$(nproc) node
	@bash loadtest/run_cluster.sh

bench: all
	@bash loadtest/bench.sh

# kvload's own correctness check (coordinated omission, saturation vs wrk): it measures timing
# by nature, so it runs here and not in `make test`.
test-kvload: loadtest/kvload
	@bash test/deps.sh wrk nginx-light
	@python3 loadtest/test_kvload.py

# CPU flamegraph of the coordinating node: make flame WORKLOAD=put|get MODE=http|binary
WORKLOAD ?= put
MODE ?= binary
flame: node
	@bash flamegraphs/record.sh $(WORKLOAD) $(MODE)

# new/old saturation (OLD=path/to/older/node) and --fsync always vs periodic, alternated runs
bench-compare: all
	@bash loadtest/bench_compare.sh

# peer authentication's cost: --cluster-secret-file against none, alternated, binary and HTTP peers
bench-auth: all
	@bash loadtest/bench_auth.sh

# hinted handoff: hints written with a peer down, disk bytes per hint, replay rate once it is back
bench-hints: all
	@bash loadtest/bench_hints.sh

# cluster-wide range: scope=cluster through one node of 3 (from=2) against that node's local range
bench-cluster-range: all
	@bash loadtest/bench_cluster_range.sh

bench-repair: all
	@bash loadtest/bench_repair.sh

bench-single: all
	@bash loadtest/bench_single.sh

bench-storage:
	@bash test/deps.sh libleveldb-dev
	@$(MAKE) --no-print-directory $(BUILD)/bench_storage
	@$(BUILD)/bench_storage

$(BUILD)/bench_storage: test/bench/bench_storage.cc $(BUILD)/libstorage.a $(BUILD)/libcommon.a
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -o $@ $< $(BUILD)/libstorage.a $(BUILD)/libcommon.a -lleveldb $(LDLIBS)

format:
	clang-format -i $$(git ls-files 'src/*.cc' 'src/*.h' 'test/*.cc' 'test/*.h' 'loadtest/*.cc' 'loadtest/*.h')

check-deps:
	@($(foreach m,$(MODULES),echo "$(m): $(DEPS_$(m))";)) | python3 test/check_deps.py

check-format:
	clang-format --dry-run -Werror $$(git ls-files 'src/*.cc' 'src/*.h' 'test/*.cc' 'test/*.h' 'loadtest/*.cc' 'loadtest/*.h')

# README.md's flag table (between <!-- flags:begin ... --> and <!-- flags:end -->) from the node's
# own flag table; a unit test (unit_node) fails while they differ.
readme-flags: node
	./node --help-markdown > $(BUILD)/flags.md
	awk -v table=$(BUILD)/flags.md '/^<!-- flags:end/ { while ((getline l < table) > 0) print l; skip = 0 } \
	  !skip { print } /^<!-- flags:begin/ { skip = 1 }' README.md > $(BUILD)/README.md.new
	cp $(BUILD)/README.md.new README.md && rm $(BUILD)/README.md.new

clean:
	rm -rf build node loadtest/kvload

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

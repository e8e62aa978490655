# tests/cpp/cpp.mk: the tests of include/rr.hpp (the header-only C++ interface).
# Included by the Makefile; try it alone with
#   make -f Makefile -f tests/cpp/cpp.mk test-cpp-header
#
# test-cpp-header builds build/cpp-tests-asan from tests/cpp/*.cpp (but hello.cpp) with
# ASan+UBSan and runs it with leak detection, then builds and runs build/cpp-hello, the
# README's ten-line example, over the C example worker.

CPP_HEADER    := include/rr.hpp
CPP_TEST_SRCS := $(filter-out tests/cpp/hello.cpp,$(wildcard tests/cpp/*.cpp))

.PHONY: test-cpp-header

$(BUILD)/cpp-tests-asan: $(CPP_TEST_SRCS) $(CPP_HEADER) $(HEADER) | lib $(BUILD)
	$(CXX) $(RR_CXXFLAGS) $(ASAN_FLAGS) $(CXXFLAGS) -o $@ $(CPP_TEST_SRCS) $(RR_LDFLAGS) $(LDFLAGS)

$(BUILD)/cpp-hello: tests/cpp/hello.cpp $(CPP_HEADER) $(HEADER) | lib $(BUILD)
	$(CXX) $(RR_CXXFLAGS) $(CXXFLAGS) -o $@ $< $(RR_LDFLAGS) $(LDFLAGS)

test-cpp-header: $(BUILD)/cpp-tests-asan $(BUILD)/cpp-hello $(BUILD)/worker  ## the tests of include/rr.hpp (ASan+UBSan), and the README's C++ example
	nm $(BUILD)/cpp-tests-asan | grep -q __asan_init
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(C_TEST_ENV) $(LIMIT) $(BUILD)/cpp-tests-asan
	@out=$$($(BUILD)/cpp-hello $(BUILD)/worker); echo "$(BUILD)/cpp-hello $(BUILD)/worker: $$out"; \
		test "$$out" = "hello world" || { echo "cpp-hello printed something else" >&2; exit 1; }

# build/host-cpp (examples-c/host.cpp, a rule of the Makefile) is written with rr.hpp too.
$(BUILD)/host-cpp: $(CPP_HEADER)

// ThreadSanitizer: the allocations of prebuilt libraries that order their
// objects' lives themselves are not accesses.
//
// ThreadSanitizer records an allocation as a write by the allocating thread
// and a deallocation as a write by the freeing one. For an object that one
// of Debian's uninstrumented libraries allocates, fills, hands to another
// thread and frees, through atomics ThreadSanitizer cannot see, those two
// records are the only accesses of the library it sees, and any access by
// instrumented code on another thread (a gRPC header's code reading the
// object, a memcpy) races with them in its eyes. tsan.supp already has
// such libraries' own calls of malloc and free ignored (called_from_lib);
// their C++ allocations reach malloc through libstdc++'s operator new,
// where that does not apply. The operator new and delete below, linked
// into every binary of the tsan configuration, do the same for them: when
// the caller is in one of these libraries, the allocation or deallocation
// happens with ThreadSanitizer ignoring the thread's accesses, so that it
// resets the memory's history instead of writing it. Accesses by
// instrumented code to such memory are still checked against each other.
//
// The libraries:
// - gRPC's: libgrpc, libgrpc++ (and libgrpc++_reflection), libgpr, libupb,
//   libaddress_sorting. Calls, completion queue entries, the sync server's
//   requests, received messages and status texts are theirs.
// - libabsl_status and libabsl_cord: absl::Status and absl::Cord share
//   their representations between copies with reference counts kept in
//   the library; the last copy frees them, on whichever thread.
//
// The replaceable forms defined are those these libraries call (nm -D
// --undefined-only of each); the others stay libstdc++'s.

#include <link.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();

namespace {

// The executable segments of the libraries above.
struct CodeRanges {
  static constexpr int kMax = 32;
  uintptr_t begin[kMax];
  uintptr_t end[kMax];
  int count = 0;
};

// True for the file name (or path) of one of the libraries above.
bool IsSelfOrderingLibrary(const char* path) {
  static const char* const kPrefixes[] = {"libgrpc.so.",
                                          "libgrpc++",
                                          "libgpr.so.",
                                          "libupb.so.",
                                          "libaddress_sorting.so.",
                                          "libabsl_status.so.",
                                          "libabsl_cord.so."};
  const char* slash = std::strrchr(path, '/');
  const char* name = slash == nullptr ? path : slash + 1;
  for (const char* prefix : kPrefixes) {
    if (std::strncmp(name, prefix, std::strlen(prefix)) == 0) return true;
  }
  return false;
}

int AddRanges(dl_phdr_info* info, size_t /*size*/, void* data) {
  auto* ranges = static_cast<CodeRanges*>(data);
  if (info->dlpi_name == nullptr || !IsSelfOrderingLibrary(info->dlpi_name)) {
    return 0;
  }
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& header = info->dlpi_phdr[i];
    if (header.p_type != PT_LOAD || (header.p_flags & PF_X) == 0) continue;
    if (ranges->count == CodeRanges::kMax) break;
    ranges->begin[ranges->count] = info->dlpi_addr + header.p_vaddr;
    ranges->end[ranges->count] =
        info->dlpi_addr + header.p_vaddr + header.p_memsz;
    ++ranges->count;
  }
  return 0;
}

// The libraries are needed by the executable, so they are all loaded before
// its first allocation; their code is found at the first one.
const CodeRanges& SelfOrderingCode() {
  static const CodeRanges* const ranges = [] {
    static CodeRanges found;
    dl_iterate_phdr(&AddRanges, &found);
    return &found;
  }();
  return *ranges;
}

// True when `return_address` (of operator new or delete) is in the code of
// one of the libraries.
bool Unseen(void* return_address) {
  const uintptr_t pc = reinterpret_cast<uintptr_t>(return_address);
  const CodeRanges& ranges = SelfOrderingCode();
  for (int i = 0; i < ranges.count; ++i) {
    if (pc >= ranges.begin[i] && pc < ranges.end[i]) return true;
  }
  return false;
}

// malloc for operator new; `unseen` allocates without writing. Returns
// nullptr when there is no memory and no new-handler to make some.
void* Allocate(std::size_t size, bool unseen) {
  if (size == 0) size = 1;
  for (;;) {
    void* memory;
    if (unseen) {
      __tsan_ignore_thread_begin();
      memory = std::malloc(size);
      __tsan_ignore_thread_end();
    } else {
      memory = std::malloc(size);
    }
    if (memory != nullptr) return memory;
    const std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) return nullptr;
    handler();
  }
}

void* AllocateOrThrow(std::size_t size, bool unseen) {
  void* memory = Allocate(size, unseen);
  if (memory == nullptr) throw std::bad_alloc();
  return memory;
}

// free for operator delete; `unseen` frees without writing.
void Deallocate(void* memory, bool unseen) {
  if (unseen) {
    __tsan_ignore_thread_begin();
    std::free(memory);
    __tsan_ignore_thread_end();
  } else {
    std::free(memory);
  }
}

}  // namespace

void* operator new(std::size_t size) {
  return AllocateOrThrow(size, Unseen(__builtin_return_address(0)));
}

void* operator new[](std::size_t size) {
  return AllocateOrThrow(size, Unseen(__builtin_return_address(0)));
}

void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size, Unseen(__builtin_return_address(0)));
}

void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return Allocate(size, Unseen(__builtin_return_address(0)));
}

void operator delete(void* memory) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

void operator delete[](void* memory) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

void operator delete(void* memory, std::size_t /*size*/) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

void operator delete[](void* memory, std::size_t /*size*/) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

void operator delete(void* memory, const std::nothrow_t&) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

void operator delete[](void* memory, const std::nothrow_t&) noexcept {
  Deallocate(memory, Unseen(__builtin_return_address(0)));
}

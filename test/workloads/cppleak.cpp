// cppleak: a C++ program that leaks through a member function called inside
// a try block, with an inlined helper that may throw, for unwinding tests
// (g++ -O2: no frame pointers; .eh_frame with personality and LSDA).
// Commands on stdin, one answer line each: "grow N" keeps N MiB more, in
// blocks of 1 MiB made by Store::grow; "nop"; "exit".
#include <cstring>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

struct Store {
	std::vector<std::unique_ptr<char[]>> kept;

	__attribute__((noinline)) void grow(long mib)
	{
		for (long i = 0; i < mib; i++) {
			auto p = std::make_unique<char[]>(1 << 20);
			std::memset(p.get(), 1, 1 << 20);
			kept.push_back(std::move(p));
		}
	}
};

static inline void check(long mib)
{
	if (mib < 0)
		throw std::invalid_argument("negative size");
}

__attribute__((noinline)) long handle(Store &s, long mib)
{
	try {
		check(mib);
		s.grow(mib);
	} catch (const std::exception &e) {
		std::cerr << "error: " << e.what() << "\n";
		return -1;
	}
	return static_cast<long>(s.kept.size());
}

int main()
{
	Store store;
	std::string cmd;
	long n = 0;
	while (std::cin >> cmd) {
		if (cmd == "grow" && std::cin >> n)
			handle(store, n);
		else if (cmd == "exit")
			return 0;
		std::cout << "ok" << std::endl;
	}
	return 0;
}

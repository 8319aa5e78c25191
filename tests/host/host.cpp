// host.cpp -- a C++ host of lunet.h's model API, built against an installed
// lunet with `pkg-config --cflags --libs lunet` only.  Run as
// `host_cpp FIXTURES_DIR` (files of make_fixtures.lua): loads the MLP,
// learns the output's shape, runs the input and compares the output with
// the one lunet gave, bit for bit; then checks that an error comes back as
// a status and a message (no exception, no exit).
#include <lunet.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace {

struct ModelDeleter {
	void operator()(lunet_model *m) const { lunet_model_free(m); }
};
using Model = std::unique_ptr<lunet_model, ModelDeleter>;

std::vector<float> read_floats(const std::string &path)
{
	std::ifstream f(path, std::ios::binary);
	std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
	std::vector<float> v(bytes.size() / sizeof(float));
	std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
	return v;
}

int fail(const std::string &what, const lunet_error &err)
{
	std::fprintf(stderr, "host_cpp: %s: %s: %s\n", what.c_str(), lunet_status_name(err.status),
	             err.message);
	return 1;
}

}  // namespace

int main(int argc, char **argv)
{
	if (argc != 2) {
		std::fprintf(stderr, "usage: host_cpp FIXTURES_DIR\n");
		return 2;
	}
	const std::string dir = argv[1];
	lunet_error err{};
	lunet_model *raw = nullptr;
	if (lunet_model_load(&raw, (dir + "/mlp.lunet").c_str(), &err) != LUNET_OK)
		return fail("load", err);
	Model model(raw);

	const std::vector<float> x = read_floats(dir + "/mlp_x.f32");
	const std::vector<float> want = read_floats(dir + "/mlp_y.f32");
	const int64_t shape[2] = {3, 4};
	int ndim = 0;
	int64_t out_shape[LUNET_MAX_DIMS];
	// the output's shape first, then a buffer of that size
	if (lunet_model_forward(model.get(), x.data(), 2, shape, nullptr, 0, &ndim, out_shape, &err) !=
	    LUNET_OK)
		return fail("shape query", err);
	size_t n = 1;
	for (int d = 0; d < ndim; d++)
		n *= static_cast<size_t>(out_shape[d]);
	std::vector<float> y(n);
	if (lunet_model_forward(model.get(), x.data(), 2, shape, y.data(), y.size(), &ndim, out_shape,
	                        &err) != LUNET_OK)
		return fail("forward", err);
	if (y != want) {
		std::fprintf(stderr, "host_cpp: the output differs from lunet's\n");
		return 1;
	}
	std::printf("host_cpp: output {%lld,%lld}, y[0][0] = %.6f, same as lunet's\n",
	            static_cast<long long>(out_shape[0]), static_cast<long long>(out_shape[1]), y[0]);

	const int64_t wrong[2] = {3, 5};
	std::vector<float> x15(15);
	lunet_status s = lunet_model_forward(model.get(), x15.data(), 2, wrong, y.data(), y.size(),
	                                     &ndim, out_shape, &err);
	if (s != LUNET_ESHAPE || !std::strstr(err.message, "{3,5}")) {
		std::fprintf(stderr, "host_cpp: expected LUNET_ESHAPE naming {3,5}, got %s: %s\n",
		             lunet_status_name(s), err.message);
		return 1;
	}
	std::printf("host_cpp: a wrong shape gives %s: %s\n", lunet_status_name(s), err.message);
	return 0;
}

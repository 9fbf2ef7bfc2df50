#include "tests/helpers.h"
using namespace vt;
TEST_CASE("smoke") {
  Tensor a = testing::random_leaf({2, 3}, 1);
  testing::gradcheck([](const std::vector<Tensor>& l) { return mul(l[0], l[0]); }, {a});
}

// The process tests' harness starts a new cluster again on fresh ports when
// a port it picked is taken before a node binds it (another test on the
// machine took it): here the test itself holds node 2's peer port, so the
// first start must fail that way and the second must serve.
//
//   maroon-port-taken-test --maroon BUILD/src/cli/maroon --dir DIR
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "local_cluster.h"

int main(int argc, char** argv) {
  using namespace maroon;
  std::string maroon_path, dir;
  if (!chaos::parse_test_args(argc, argv, "maroon-port-taken-test --maroon BIN --dir DIR",
                              maroon_path, dir)) {
    return 2;
  }
  auto made = chaos::fresh_cluster(maroon_path, dir, 3);
  if (!made.is_ok()) {
    std::fprintf(stderr, "port-taken-test: %s\n", made.status().to_string().c_str());
    return 1;
  }
  chaos::LocalCluster& cl = *made;
  const uint16_t taken = cl.node(1).peer_port;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(taken);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(fd, 1) != 0) {
    std::fprintf(stderr, "port-taken-test: cannot hold port %u\n", taken);
    return 1;
  }
  Status s = chaos::start_all_serving(cl, "port-taken-test", std::chrono::milliseconds(60000));
  ::close(fd);
  if (!s) return chaos::fail_test(cl, "port-taken-test", s.to_string());
  if (cl.node(1).peer_port == taken) {
    return chaos::fail_test(cl, "port-taken-test", "node 2 serves on the port the test held");
  }
  cl.shutdown(std::chrono::milliseconds(10000));
  std::printf("port-taken-test: node 2's port %u was taken; the cluster serves on fresh ports "
              "(node 2 on %u)\n",
              taken, cl.node(1).peer_port);
  return 0;
}

#include <iostream>
#include <rr.hpp>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    rr::Server server(rr::Config(argv[1]).workers(2));
    server.start();
    rr::Payload answer = server.exec("hello", "world");
    std::cout << answer.context() << " " << answer.body() << "\n";
}

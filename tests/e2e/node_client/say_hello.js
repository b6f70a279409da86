// Usage: node say_hello.js HOST:PORT PROTO_FILE NAME  -> prints the reply as JSON, or the error status.
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");

const [address, protoFile, name] = process.argv.slice(2);
const definition = loader.loadSync(protoFile, { keepCase: true });
const greeter = grpc.loadPackageDefinition(definition).greeter.v1;
const client = new greeter.Greeter(address, grpc.credentials.createInsecure());
client.SayHello({ name }, (err, reply) => {
  if (err) {
    console.log(JSON.stringify({ code: err.code, details: err.details }));
    process.exit(1);
  }
  console.log(JSON.stringify(reply));
  client.close();
});

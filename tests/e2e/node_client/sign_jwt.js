// Usage: node sign_jwt.js SECRET SUB ROLE[,ROLE]  -> prints an HS256 access token made by jsonwebtoken,
// an implementation independent of the kernel's PyJWT.
const jwt = require("jsonwebtoken");

const [secret, sub, roles] = process.argv.slice(2);
const token = jwt.sign({ roles: roles ? roles.split(",") : [] }, secret, {
  algorithm: "HS256", subject: sub, issuer: "arcana", audience: "arcana", expiresIn: 300, jwtid: "node-" + Date.now(),
});
console.log(token);

// Prints what exifr and ExifReader find of an image's A1111 generation data, as JSON:
// {"exifr": {"parameters": ..., "userComment": [...]}, "exifreader": {...}}. A PNG's text is
// "parameters"; a JPEG's is EXIF UserComment, whose raw bytes each reader hands back.
import fs from 'node:fs';
import exifr from 'exifr';
import ExifReader from 'exifreader';

const bytes = (value) => (value == null ? null : Array.from(value));
const data = fs.readFileSync(process.argv[2]);
const found = await exifr.parse(data, true) ?? {};
const tags = ExifReader.load(data);
process.stdout.write(JSON.stringify({
  exifr: {parameters: found.parameters ?? null, userComment: bytes(found.userComment)},
  exifreader: {parameters: tags.parameters?.value ?? null, userComment: bytes(tags.UserComment?.value)},
}));
